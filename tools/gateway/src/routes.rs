//! API Gateway HTTP API route selection: the most specific route wins (literal segments over
//! `{variables}` over a greedy `{proxy+}`, an exact method over `ANY`), then `$default`; no
//! match is API Gateway's own 404. A trailing slash is not part of the match: the template
//! declares `/api/user/view` and `/api/user/view/` reaches it (the function sees the raw path).

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Variable(String),
    Greedy(String),
}

#[derive(Debug, Clone)]
pub struct Route {
    /// `POST /api/totp/login/{code}`, or `$default`.
    pub key: String,
    /// `None`: any method (`ANY`, or `$default`).
    method: Option<String>,
    /// `None` for `$default`.
    segments: Option<Vec<Segment>>,
    /// Index of the function serving it.
    pub function: usize,
}

impl Route {
    pub fn new(method: Option<&str>, path: Option<&str>, function: usize) -> Self {
        let (key, method, segments) = match (method, path) {
            (Some(method), Some(path)) => {
                let segments = split(path)
                    .map(
                        |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                            Some(name) => match name.strip_suffix('+') {
                                Some(name) => Segment::Greedy(name.to_owned()),
                                None => Segment::Variable(name.to_owned()),
                            },
                            None => Segment::Literal(s.to_owned()),
                        },
                    )
                    .collect();
                let method = method.to_uppercase();
                (
                    format!("{method} {path}"),
                    (method != "ANY").then_some(method),
                    Some(segments),
                )
            }
            _ => ("$default".to_owned(), None, None),
        };
        Self {
            key,
            method,
            segments,
            function,
        }
    }

    /// The path parameters when `path` matches this route's path (any method).
    fn match_path(&self, path: &[&str]) -> Option<BTreeMap<String, String>> {
        let segments = self.segments.as_ref()?;
        let mut params = BTreeMap::new();
        let mut rest = path;
        for (i, segment) in segments.iter().enumerate() {
            match segment {
                Segment::Greedy(name) => {
                    if rest.is_empty() || i + 1 != segments.len() {
                        return None;
                    }
                    params.insert(name.clone(), decode(&rest.join("/")));
                    return Some(params);
                }
                _ if rest.is_empty() => return None,
                Segment::Literal(literal) => {
                    if rest[0] != literal {
                        return None;
                    }
                }
                Segment::Variable(name) => {
                    if rest[0].is_empty() {
                        return None;
                    }
                    params.insert(name.clone(), decode(rest[0]));
                }
            }
            rest = &rest[1..];
        }
        rest.is_empty().then_some(params)
    }

    /// Higher is more specific.
    fn rank(&self) -> (u8, usize, usize, u8) {
        let segments = self.segments.as_deref().unwrap_or_default();
        let greedy = segments.iter().any(|s| matches!(s, Segment::Greedy(_)));
        let literals = segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count();
        (
            u8::from(!greedy),
            literals,
            segments.len(),
            u8::from(self.method.is_some()),
        )
    }
}

/// `/a/b/` → `a`, `b` (the trailing slash dropped; `/` is no segment at all).
fn split(path: &str) -> impl Iterator<Item = &str> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let path = path.strip_suffix('/').unwrap_or(path);
    path.split('/').filter(move |_| !path.is_empty())
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Selected<'r> {
    pub key: &'r str,
    pub function: usize,
    pub params: BTreeMap<String, String>,
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Self {
        Self { routes }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route API Gateway would select for `method` and the raw `path`, if any.
    pub fn select(&self, method: &str, path: &str) -> Option<Selected<'_>> {
        let segments: Vec<&str> = split(path).collect();
        let best = self
            .routes
            .iter()
            .filter(|r| r.method.is_none() || r.method.as_deref() == Some(method))
            .filter_map(|r| r.match_path(&segments).map(|params| (r, params)))
            .max_by_key(|(r, _)| r.rank());
        let (route, params) = match best {
            Some(found) => found,
            None => (
                self.routes.iter().find(|r| r.segments.is_none())?,
                BTreeMap::new(),
            ),
        };
        Some(Selected {
            key: &route.key,
            function: route.function,
            params,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(extra: &[(Option<&str>, Option<&str>)]) -> Router {
        let mut routes = vec![
            Route::new(Some("POST"), Some("/api/user/create"), 0),
            Route::new(Some("GET"), Some("/api/user/view"), 0),
            Route::new(Some("POST"), Some("/api/totp/login/{code}"), 1),
            Route::new(Some("GET"), Some("/api/static/login/{code}"), 2),
        ];
        for (i, (method, path)) in extra.iter().enumerate() {
            routes.push(Route::new(*method, *path, 10 + i));
        }
        Router::new(routes)
    }

    #[test]
    fn a_path_matches_with_and_without_its_trailing_slash() {
        let router = router(&[]);
        for path in ["/api/user/create", "/api/user/create/"] {
            let selected = router.select("POST", path).unwrap();
            assert_eq!(
                (selected.key, selected.function),
                ("POST /api/user/create", 0)
            );
        }
        assert_eq!(router.select("POST", "/api/user/create//"), None);
        assert_eq!(router.select("POST", "/api/user/createx/"), None);
        assert_eq!(router.select("POST", "/api/user/create/extra/"), None);
    }

    #[test]
    fn path_variables_are_captured_and_decoded() {
        let router = router(&[]);
        let selected = router.select("POST", "/api/totp/login/123456/").unwrap();
        assert_eq!(selected.key, "POST /api/totp/login/{code}");
        assert_eq!(selected.params["code"], "123456");
        let selected = router.select("GET", "/api/static/login/a%20b").unwrap();
        assert_eq!(selected.params["code"], "a b");
        assert_eq!(router.select("POST", "/api/totp/login/"), None);
    }

    #[test]
    fn another_method_is_no_match_without_any_or_default() {
        let router = router(&[]);
        assert_eq!(router.select("GET", "/api/user/create/"), None);
        assert_eq!(router.select("OPTIONS", "/api/user/create/"), None);
        assert_eq!(router.select("GET", "/"), None);
    }

    #[test]
    fn the_most_specific_route_wins_then_any_then_default() {
        let router = router(&[
            (Some("ANY"), Some("/api/{proxy+}")),
            (Some("ANY"), Some("/api/user/create")),
            (Some("GET"), Some("/api/totp/login/now")),
            (None, None),
        ]);
        assert_eq!(
            router.select("POST", "/api/user/create/").unwrap().function,
            0
        );
        assert_eq!(
            router.select("PUT", "/api/user/create/").unwrap().function,
            11
        );
        assert_eq!(
            router
                .select("GET", "/api/totp/login/now")
                .unwrap()
                .function,
            12
        );
        let greedy = router.select("POST", "/api/nope/deeper/").unwrap();
        assert_eq!(
            (greedy.function, greedy.params["proxy"].as_str()),
            (10, "nope/deeper")
        );
        let fallback = router.select("GET", "/admin/").unwrap();
        assert_eq!((fallback.key, fallback.function), ("$default", 13));
    }
}
