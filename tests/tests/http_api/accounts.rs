use api_tests::*;
use serde_json::json;

#[tokio::test]
async fn a_new_user_can_sign_up_log_in_and_view_their_account() {
    let server = TestServer::start().await;
    let email = unique_email("alice");
    let created = server.create_user(&email, STRONG_PASSWORD).await;
    assert_eq!(created.status, 201);
    let id = created.json()["id"].as_u64().unwrap();
    assert_eq!(created.json(), json!({"email": email, "id": id}));
    let token = server.login(&email, STRONG_PASSWORD).await.token();
    server
        .view(&token)
        .await
        .assert(200, json!({"id": id, "email": email}));
}
