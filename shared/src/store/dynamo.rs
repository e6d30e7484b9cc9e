//! PLACEHOLDER (being written): the DynamoDB adapter.
use super::*;
use async_trait::async_trait;
pub struct DynamoStore;
impl DynamoStore {
    pub fn new(_c: &aws_config::SdkConfig, _t: String) -> Self {
        Self
    }
    pub async fn ensure_table(&self) -> StoreResult<()> {
        Ok(())
    }
    pub async fn warm_up(&self) {}
}
#[async_trait]
impl Store for DynamoStore {
    async fn create_user(&self, _new: NewUser) -> StoreResult<Created> {
        unimplemented!("placeholder until the DynamoDB adapter lands")
    }

    async fn user(&self, _id: UserId) -> StoreResult<Option<User>> {
        unimplemented!("placeholder until the DynamoDB adapter lands")
    }

    async fn user_by_email(&self, _e: &str) -> StoreResult<Option<User>> {
        unimplemented!("placeholder until the DynamoDB adapter lands")
    }

    async fn login_lookup(&self, _e: &str) -> StoreResult<(Option<User>, Failures)> {
        unimplemented!("placeholder until the DynamoDB adapter lands")
    }

    async fn record_login_failure(&self, _e: &str, _n: i64, _x: i64) -> StoreResult<()> {
        unimplemented!("placeholder until the DynamoDB adapter lands")
    }

    async fn clear_login_failures(&self, _e: &str) -> StoreResult<()> {
        unimplemented!("placeholder until the DynamoDB adapter lands")
    }

    async fn claim_reset_mail(&self, _e: &str, _n: i64, _w: i64) -> StoreResult<bool> {
        unimplemented!("placeholder until the DynamoDB adapter lands")
    }

    async fn rotate_token_gen(&self, _id: UserId, _g: &str) -> StoreResult<bool> {
        unimplemented!("placeholder until the DynamoDB adapter lands")
    }

    async fn delete_user(&self, _u: &User, _g: &str) -> StoreResult<bool> {
        unimplemented!("placeholder until the DynamoDB adapter lands")
    }

    async fn update_password(&self, _id: UserId, _u: PasswordUpdate) -> StoreResult<bool> {
        unimplemented!("placeholder until the DynamoDB adapter lands")
    }

    async fn insert_totp_device(&self, _id: UserId, _d: TotpDevice) -> StoreResult<TotpInsert> {
        unimplemented!("placeholder until the DynamoDB adapter lands")
    }

    async fn accept_totp(&self, _id: UserId, _a: TotpAccept) -> StoreResult<bool> {
        unimplemented!("placeholder until the DynamoDB adapter lands")
    }

    async fn record_totp_failure(
        &self,
        _id: UserId,
        _d: &str,
        _f: u32,
        _n: i64,
    ) -> StoreResult<bool> {
        unimplemented!("placeholder until the DynamoDB adapter lands")
    }

    async fn replace_static_codes(
        &self,
        _id: UserId,
        _d: &str,
        _c: StaticCodes,
    ) -> StoreResult<bool> {
        unimplemented!("placeholder until the DynamoDB adapter lands")
    }

    async fn consume_static_code(&self, _id: UserId, _h: &str, _f: u32) -> StoreResult<bool> {
        unimplemented!("placeholder until the DynamoDB adapter lands")
    }

    async fn record_static_failure(&self, _id: UserId, _f: u32, _n: i64) -> StoreResult<bool> {
        unimplemented!("placeholder until the DynamoDB adapter lands")
    }

    async fn remove_two_factor(&self, _id: UserId, _g: &str) -> StoreResult<bool> {
        unimplemented!("placeholder until the DynamoDB adapter lands")
    }
}
