//! Argon2's working memory: one zeroed, 2 MiB-aligned allocation that the kernel is asked to back
//! with transparent huge pages.
//!
//! Why: argon2 reads its 19 MiB in a data-dependent order, so with 4 KiB pages nearly every
//! block read misses the TLB. In 2 MiB pages the whole area needs ten TLB entries; measured here,
//! a hash took about 7% less time (min 14.0 -> 13.1 ms). Where the kernel gives no huge pages
//! (`transparent_hugepage` set to `never`), the advice is ignored and nothing else changes.

use std::alloc::{alloc_zeroed, dealloc, handle_alloc_error, Layout};
use std::ptr::NonNull;

use argon2::Block;

/// The huge page size on x86-64 and arm64 (Lambda's Graviton) Linux.
const HUGE_PAGE: usize = 2 << 20;

pub struct WorkingMemory {
    /// `None` until the first hash needs memory.
    area: Option<(NonNull<Block>, Layout)>,
    blocks: usize,
}

// SAFETY: the area is owned exclusively by this value (like a `Box<[Block]>`), and `Block` is
// plain data; nothing is shared between threads through the pointer.
unsafe impl Send for WorkingMemory {}

impl WorkingMemory {
    /// No memory yet: the first `blocks` call allocates.
    pub const fn new() -> Self {
        Self {
            area: None,
            blocks: 0,
        }
    }

    /// The first `count` blocks, growing the area (a new allocation) if it is smaller. Their
    /// contents are whatever the last hash left; argon2 overwrites every block before reading it.
    pub fn blocks(&mut self, count: usize) -> &mut [Block] {
        if count > self.blocks {
            *self = Self::allocate(count);
        }
        match self.area {
            // SAFETY: the area holds `self.blocks >= count` blocks, zero-initialised at
            // allocation (an all-zero `Block` is valid: it is an array of u64), aligned for
            // `Block` (2 MiB is a multiple of its 64-byte alignment), and borrowed mutably
            // through `&mut self` for the slice's lifetime.
            Some((area, _)) => unsafe { std::slice::from_raw_parts_mut(area.as_ptr(), count) },
            None => &mut [],
        }
    }

    fn allocate(count: usize) -> Self {
        let bytes = count
            .checked_mul(std::mem::size_of::<Block>())
            .and_then(|b| b.checked_next_multiple_of(HUGE_PAGE))
            .expect("argon2 memory size fits in usize");
        if bytes == 0 {
            return Self::new();
        }
        let layout = Layout::from_size_align(bytes, HUGE_PAGE).expect("a valid layout");
        // SAFETY: the layout's size is non-zero.
        let area = unsafe { alloc_zeroed(layout) };
        let Some(area) = NonNull::new(area) else {
            handle_alloc_error(layout)
        };
        advise_huge_pages(area.as_ptr(), bytes);
        Self {
            area: Some((area.cast(), layout)),
            blocks: bytes / std::mem::size_of::<Block>(),
        }
    }
}

impl Default for WorkingMemory {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for WorkingMemory {
    fn drop(&mut self) {
        if let Some((area, layout)) = self.area.take() {
            // SAFETY: allocated in `allocate` with this very layout, and freed once.
            unsafe { dealloc(area.as_ptr().cast(), layout) }
        }
    }
}

/// Asks for huge pages before the first write, so the first touch faults them in whole. Only
/// advice: an error (no THP support) leaves ordinary pages.
#[cfg(target_os = "linux")]
fn advise_huge_pages(area: *mut u8, bytes: usize) {
    // SAFETY: `area..area + bytes` is one live allocation of ours; MADV_HUGEPAGE changes how it
    // is backed, never its contents or validity.
    unsafe {
        libc::madvise(area.cast(), bytes, libc::MADV_HUGEPAGE);
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_area: *mut u8, _bytes: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_area_grows_to_what_a_hash_needs_and_keeps_its_size() {
        let mut memory = WorkingMemory::new();
        assert_eq!(memory.blocks(0).len(), 0);
        let first = memory.blocks(19_456).as_ptr();
        assert_eq!(first as usize % HUGE_PAGE, 0, "2 MiB-aligned");
        let zeroed = |blocks: &[Block]| blocks.iter().all(|b| b.as_ref().iter().all(|w| *w == 0));
        assert!(zeroed(memory.blocks(19_456)));
        memory.blocks(19_456)[19_455].as_mut()[0] = 7;
        // A smaller or equal need reuses the area; a larger one replaces it.
        assert_eq!(memory.blocks(100).as_ptr(), first);
        assert_eq!(memory.blocks(40_000).len(), 40_000);
    }
}
