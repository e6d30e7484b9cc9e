//! Provisioning for local emulators (real tables come from the template) and the start-up
//! warm-up read.

use std::time::Duration;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification,
};

use super::client::{build_error, unavailable};
use super::items::*;
use super::DynamoStore;
use crate::store::{StoreError, StoreResult};

impl DynamoStore {
    /// Creates the table (pk/sk strings, on demand, TTL on `expires_at`) if it is missing, and
    /// waits until it is ACTIVE. Meant for local emulators; real tables come from the template.
    pub async fn ensure_table(&self) -> StoreResult<()> {
        let described = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await;
        match described {
            // Usually so: one round trip, not a second look.
            Ok(d) if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) => {
                return Ok(())
            }
            Ok(_) => {}
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                self.create_table().await?;
            }
            Err(err) => return Err(unavailable(err)),
        }
        for _ in 0..300 {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(unavailable)?;
            if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(StoreError::Unavailable(format!(
            "table {} did not become ACTIVE",
            self.table
        )))
    }

    async fn create_table(&self) -> StoreResult<()> {
        let mut request = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest);
        for (name, key_type) in [(PK, KeyType::Hash), (SK, KeyType::Range)] {
            request = request
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(name)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .map_err(build_error)?,
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(name)
                        .key_type(key_type)
                        .build()
                        .map_err(build_error)?,
                );
        }
        match request.send().await {
            Ok(_) => {}
            // Created by a racing caller meanwhile: fine.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) =>
            {
                return Ok(())
            }
            Err(err) => return Err(unavailable(err)),
        }
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL)
                    .build()
                    .map_err(build_error)?,
            )
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// One cheap read, so the connection (TCP, TLS) is open before the first request needs it.
    /// Whether the read answered; a failure is logged and start-up goes on (the first request
    /// then pays for the connection).
    pub async fn warm_up(&self) -> bool {
        let result = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(id_counter_key()))
            .send()
            .await;
        if let Err(err) = &result {
            tracing::warn!(error = %DisplayErrorContext(err), "DynamoDB warm-up read failed");
        }
        result.is_ok()
    }
}
