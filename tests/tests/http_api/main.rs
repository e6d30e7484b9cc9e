//! Black-box HTTP tests of the API (docs/api.md), against the app on a random port with a
//! fresh store.

/// Runs each named scenario (an `async fn(Backend)`) on both stores: `embedded::<name>` and
/// `dynamodb::<name>`, and once more on DynamoDB over a network that loses the first answer of
/// every write (`dynamodb_losing_answers::<name>`): every write path must give the same answers
/// when the SDK has to send it again. Defined before the modules, so each of them can use it.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(api_tests::Backend::Embedded).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(api_tests::Backend::DynamoDb).await;
                }
            )*
        }
        mod dynamodb_losing_answers {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(api_tests::Backend::DynamoDbLosingAnswers).await;
                }
            )*
        }
    };
}

mod accounts;
mod conventions;
mod dynamodb_calls;
mod events;
mod faults;
mod lifecycle;
mod limits;
mod login;
mod reset;
mod sessions;
mod support;
mod tokens;
mod two_factor;
mod vectors;
