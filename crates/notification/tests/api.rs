//! The notification HTTP contract, run against the memory store and against Postgres.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::{Method, StatusCode};
use notification::model::{Channel, Delivery};
use notification::{
    MemorySender, Notifier, SendError, Sender, Senders, Settings, Templates, routes, store_for,
};
use platform::Backend;
use platform::config::Loader;
use platform::http::{HttpLimits, Readiness, app};
use platform::testing::{TestClient, TestDatabase, TestResponse};
use platform::time::ManualClock;
use serde_json::{Value, json};

const DEFAULT_CAPACITY: usize = 200;

/// A sender whose every send fails, as an unreachable mail server would.
struct FailingSender;

#[async_trait]
impl Sender for FailingSender {
    async fn send(&self, _: &Delivery) -> Result<(), SendError> {
        Err(SendError::new("connection refused by the test"))
    }
}

struct TestApp {
    backend: Backend,
    client: TestClient,
    clock: Arc<ManualClock>,
    email: Arc<MemorySender>,
    webhook: Arc<MemorySender>,
    in_app: Arc<MemorySender>,
}

impl TestApp {
    async fn memory() -> Self {
        Self::build(Backend::Memory, DEFAULT_CAPACITY, None)
    }

    async fn postgres() -> Self {
        let database = TestDatabase::create().await;
        Self::build(Backend::Postgres(database.pool), DEFAULT_CAPACITY, None)
    }

    /// Another instance on the same store kind, with its own history capacity and,
    /// optionally, a failing sender on one channel. Postgres instances share the database.
    fn rebuilt(&self, capacity: usize, failing: Option<Channel>) -> Self {
        Self::build(self.backend.clone(), capacity, failing)
    }

    fn build(backend: Backend, capacity: usize, failing: Option<Channel>) -> Self {
        let clock = ManualClock::starting_now();
        let settings = Settings {
            recent_capacity: capacity,
            ..Settings::default()
        };
        let email = Arc::new(MemorySender::new(capacity));
        let webhook = Arc::new(MemorySender::new(capacity));
        let in_app = Arc::new(MemorySender::new(capacity));
        let mut senders = Senders::new(email.clone(), webhook.clone(), in_app.clone());
        if let Some(channel) = failing {
            senders = senders.with_sender(channel, Arc::new(FailingSender));
        }

        let store = store_for(&backend, &settings);
        let templates = Templates::builtin().expect("built-in templates compile");
        let notifier = Arc::new(Notifier::new(
            store,
            senders,
            templates,
            clock.clone(),
            capacity,
        ));
        let readiness = match &backend {
            Backend::Memory => Readiness::Always,
            Backend::Postgres(pool) => Readiness::Postgres(pool.clone()),
        };
        let router = app(routes::router(notifier), readiness, HttpLimits::default());
        TestApp {
            backend,
            client: TestClient::new(router),
            clock,
            email,
            webhook,
            in_app,
        }
    }

    async fn notify(&self, body: Value) -> TestResponse {
        self.client.post("/notify").json(&body).send().await
    }

    /// Sends a notification that must be accepted and returns the delivery.
    async fn sent(&self, body: Value) -> Value {
        let response = self.notify(body).await;
        response.expect_status(StatusCode::ACCEPTED);
        response.json()
    }

    async fn recent(&self, query: &str) -> Vec<Value> {
        let response = self
            .client
            .get(&format!("/notifications/recent{query}"))
            .send()
            .await;
        response.expect_status(StatusCode::OK);
        response.json().as_array().expect("an array").clone()
    }

    fn sender(&self, channel: Channel) -> &MemorySender {
        match channel {
            Channel::Email => &self.email,
            Channel::Webhook => &self.webhook,
            Channel::InApp => &self.in_app,
        }
    }
}

fn welcome(channel: &str, recipient: &str, name: &str) -> Value {
    json!({"channel": channel, "recipient": recipient, "template": "welcome_email", "data": {"Name": name}})
}

/// Checks that `response` is a 400 naming `field` and returns its message.
#[track_caller]
fn invalid_field_message(response: &TestResponse, field: &str) -> String {
    let error = response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some(field));
    error["message"].as_str().expect("message").to_string()
}

fn ids(deliveries: &[Value]) -> Vec<String> {
    deliveries
        .iter()
        .map(|delivery| delivery["id"].as_str().expect("id").to_string())
        .collect()
}

platform::store_suite!(TestApp;
    each_template_renders_on_each_channel,
    delivery_has_v7_id_and_clock_time,
    numbers_render_and_unused_data_is_ignored,
    values_render_as_plain_text,
    required_fields_missing_or_empty,
    unknown_channel_or_template,
    channel_accepts_any_case,
    bad_recipient_per_channel,
    missing_variable_is_named,
    wrong_types_name_the_field,
    malformed_json_is_rejected,
    missing_content_type_is_415,
    oversized_body_is_413,
    failing_sender_is_502_and_unrecorded,
    recent_starts_empty,
    recent_is_oldest_first,
    recent_limit_takes_newest,
    recent_rejects_bad_limit,
    ring_drops_oldest,
    concurrent_notifications_all_recorded,
    methods_are_checked,
);

async fn each_template_renders_on_each_channel(app: TestApp) {
    let channels = [
        ("email", Channel::Email, "ada@example.com"),
        (
            "webhook",
            Channel::Webhook,
            "https://hooks.example.com/notify?team=ops",
        ),
        ("in_app", Channel::InApp, "user-42"),
    ];
    let templates = [
        (
            "welcome_email",
            json!({"Name": "Ada"}),
            "Welcome to CassandraNet",
            "Hello Ada, welcome to CassandraNet!",
        ),
        (
            "password_reset",
            json!({"Name": "Ada", "Code": "481516"}),
            "Your CassandraNet password reset code",
            "Hi Ada, use code 481516 to reset your password.",
        ),
        (
            "moderation_alert",
            json!({"ContentID": "content-7"}),
            "Content content-7 flagged for review",
            "Content content-7 was flagged for review.",
        ),
    ];

    let mut expected_ids = Vec::new();
    for (channel_name, channel, recipient) in channels {
        for (template, data, subject, body) in &templates {
            let delivery = app
                .sent(json!({"channel": channel_name, "recipient": recipient, "template": template, "data": data}))
                .await;
            assert_eq!(delivery["channel"], channel_name);
            assert_eq!(delivery["recipient"], recipient);
            assert_eq!(delivery["template"], *template);
            assert_eq!(delivery["subject"], *subject);
            assert_eq!(delivery["body"], *body);
            assert_eq!(delivery["status"], "sent");

            let last_sent = app.sender(channel).sent().pop().expect("the sender got it");
            assert_eq!(last_sent.id.to_string(), delivery["id"]);
            assert_eq!(last_sent.body, *body);
            expected_ids.push(delivery["id"].as_str().expect("id").to_string());
        }
        assert_eq!(app.sender(channel).sent().len(), templates.len());
    }

    let history = app.recent("").await;
    assert_eq!(ids(&history), expected_ids);
    assert!(history.iter().all(|delivery| delivery["status"] == "sent"));
}

async fn delivery_has_v7_id_and_clock_time(app: TestApp) {
    app.clock.advance(Duration::from_millis(1234));
    let delivery = app.sent(welcome("email", "ada@example.com", "Ada")).await;

    let id = uuid::Uuid::parse_str(delivery["id"].as_str().expect("id")).expect("a UUID");
    assert_eq!(id.get_version_num(), 7);
    let sent_at = delivery["sent_at"].as_str().expect("timestamp");
    assert_eq!(
        sent_at,
        platform::Clock::now(app.clock.as_ref()).to_string()
    );
    assert!(sent_at.ends_with('Z'), "{sent_at}");
    assert_eq!(sent_at.len(), 27, "microsecond precision: {sent_at}");

    let fields: Vec<&String> = delivery.as_object().expect("an object").keys().collect();
    assert_eq!(
        fields,
        [
            "body",
            "channel",
            "id",
            "recipient",
            "sent_at",
            "status",
            "subject",
            "template"
        ]
    );

    let history = app.recent("").await;
    assert_eq!(history, vec![delivery]);
}

async fn numbers_render_and_unused_data_is_ignored(app: TestApp) {
    let delivery = app
        .sent(json!({
            "channel": "in_app", "recipient": "user-1", "template": "password_reset",
            "data": {"Name": "Ada", "Code": 123456, "Unused": "ignored"}
        }))
        .await;
    assert_eq!(
        delivery["body"],
        "Hi Ada, use code 123456 to reset your password."
    );

    let delivery = app
        .sent(json!({
            "channel": "in_app", "recipient": "user-1", "template": "moderation_alert",
            "data": {"ContentID": 9.5}
        }))
        .await;
    assert_eq!(delivery["body"], "Content 9.5 was flagged for review.");
}

async fn values_render_as_plain_text(app: TestApp) {
    let name = "<b>O'Neil</b> & \"friends\" {{ Code }}";
    let delivery = app.sent(welcome("email", "ada@example.com", name)).await;
    assert_eq!(
        delivery["body"],
        format!("Hello {name}, welcome to CassandraNet!")
    );
}

async fn required_fields_missing_or_empty(app: TestApp) {
    let cases = [
        (
            json!({"recipient": "a@example.com", "template": "welcome_email"}),
            "channel",
        ),
        (
            json!({"channel": "", "recipient": "a@example.com", "template": "welcome_email"}),
            "channel",
        ),
        (
            json!({"channel": null, "recipient": "a@example.com", "template": "welcome_email"}),
            "channel",
        ),
        (
            json!({"channel": "email", "template": "welcome_email"}),
            "recipient",
        ),
        (
            json!({"channel": "email", "recipient": "", "template": "welcome_email"}),
            "recipient",
        ),
        (
            json!({"channel": "email", "recipient": "a@example.com"}),
            "template",
        ),
        (
            json!({"channel": "email", "recipient": "a@example.com", "template": ""}),
            "template",
        ),
        (
            json!({"channel": "email", "recipient": "a@example.com", "template": null}),
            "template",
        ),
        (json!({}), "channel"),
    ];
    for (body, field) in cases {
        let response = app.notify(body).await;
        let message = invalid_field_message(&response, field);
        assert!(message.contains("required"), "{message}");
    }
    assert!(app.recent("").await.is_empty());
}

async fn unknown_channel_or_template(app: TestApp) {
    let response = app.notify(welcome("sms", "+15550100", "Ada")).await;
    let message = invalid_field_message(&response, "channel");
    assert!(message.contains("email, webhook, in_app"), "{message}");

    for template in ["goodbye_email", "welcome_email.subject", "WELCOME_EMAIL"] {
        let response = app
            .notify(json!({"channel": "email", "recipient": "a@example.com", "template": template, "data": {"Name": "Ada"}}))
            .await;
        let message = invalid_field_message(&response, "template");
        assert!(message.contains("welcome_email"), "{message}");
    }
}

async fn channel_accepts_any_case(app: TestApp) {
    let delivery = app.sent(welcome("IN_APP", "user-1", "Ada")).await;
    assert_eq!(delivery["channel"], "in_app");
    let delivery = app.sent(welcome("Email", "ada@example.com", "Ada")).await;
    assert_eq!(delivery["channel"], "email");
}

async fn bad_recipient_per_channel(app: TestApp) {
    let long_id = "u".repeat(257);
    let cases = [
        ("email", "ada"),
        ("email", "ada@localhost"),
        ("email", "ada lovelace@example.com"),
        ("email", "https://hooks.example.com/notify"),
        ("webhook", "hooks.example.com/notify"),
        ("webhook", "ftp://files.example.com/drop"),
        ("webhook", "ada@example.com"),
        ("webhook", "https://user:secret@hooks.example.com/notify"),
        ("in_app", long_id.as_str()),
        ("in_app", "user\n42"),
        ("in_app", " user-42"),
    ];
    for (channel, recipient) in cases {
        let response = app.notify(welcome(channel, recipient, "Ada")).await;
        response.expect_error(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            Some("recipient"),
        );
    }
    assert!(app.recent("").await.is_empty());
    for channel in Channel::ALL {
        assert!(app.sender(channel).sent().is_empty(), "{channel}");
    }
}

async fn missing_variable_is_named(app: TestApp) {
    let base = json!({"channel": "email", "recipient": "ada@example.com"});
    let cases = [
        (json!({"template": "welcome_email"}), "data.Name"),
        (
            json!({"template": "welcome_email", "data": {}}),
            "data.Name",
        ),
        (
            json!({"template": "welcome_email", "data": null}),
            "data.Name",
        ),
        (
            json!({"template": "welcome_email", "data": {"Name": ""}}),
            "data.Name",
        ),
        (
            json!({"template": "password_reset", "data": {"Name": "Ada"}}),
            "data.Code",
        ),
        (
            json!({"template": "password_reset", "data": {"Code": "1"}}),
            "data.Name",
        ),
        (json!({"template": "password_reset"}), "data.Code"),
        (
            json!({"template": "moderation_alert", "data": {"ContentId": "c-1"}}),
            "data.ContentID",
        ),
    ];
    for (extra, field) in cases {
        let mut body = base.clone();
        for (key, value) in extra.as_object().expect("an object") {
            body[key] = value.clone();
        }
        let response = app.notify(body).await;
        let message = invalid_field_message(&response, field);
        assert!(message.contains(field), "{message}");
    }

    let response = app
        .notify(json!({"channel": "email", "recipient": "ada@example.com", "template": "welcome_email", "data": {"name": "Ada"}}))
        .await;
    let message = invalid_field_message(&response, "data.Name");
    assert!(message.contains("case-sensitive"), "{message}");

    assert!(app.recent("").await.is_empty());
    assert!(app.email.sent().is_empty());
}

async fn wrong_types_name_the_field(app: TestApp) {
    let cases = [
        (
            json!({"channel": 5, "recipient": "user-1", "template": "welcome_email"}),
            Some("channel"),
        ),
        (
            json!({"channel": "in_app", "recipient": ["user-1"], "template": "welcome_email"}),
            Some("recipient"),
        ),
        (
            json!({"channel": "in_app", "recipient": "user-1", "template": {"name": "x"}}),
            Some("template"),
        ),
        (
            json!({"channel": "in_app", "recipient": "user-1", "template": "welcome_email", "data": ["Ada"]}),
            Some("data"),
        ),
        (
            json!({"channel": "in_app", "recipient": "user-1", "template": "welcome_email", "data": "Ada"}),
            Some("data"),
        ),
        (
            json!({"channel": "in_app", "recipient": "user-1", "template": "welcome_email", "data": {"Name": true}}),
            Some("data.Name"),
        ),
        (
            json!({"channel": "in_app", "recipient": "user-1", "template": "welcome_email", "data": {"Name": null}}),
            Some("data.Name"),
        ),
        (
            json!({"channel": "in_app", "recipient": "user-1", "template": "welcome_email", "data": {"Name": ["Ada"]}}),
            Some("data.Name"),
        ),
        (
            json!({"channel": "in_app", "recipient": "user-1", "template": "welcome_email", "data": {"Name": {"first": "Ada"}}}),
            Some("data.Name"),
        ),
        (
            json!({"channel": "in_app", "recipient": "user-1", "template": "welcome_email", "data": {"Name": "Ada", "Extra": false}}),
            Some("data.Extra"),
        ),
        (json!(["not", "an", "object"]), None),
    ];
    for (body, field) in cases {
        let response = app.notify(body).await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", field);
    }

    let too_long = "x".repeat(4097);
    let response = app.notify(welcome("in_app", "user-1", &too_long)).await;
    response.expect_error(
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("data.Name"),
    );
    assert!(app.recent("").await.is_empty());
}

async fn malformed_json_is_rejected(app: TestApp) {
    for body in ["{\"channel\": ", "{} {}", ""] {
        let response = app
            .client
            .post("/notify")
            .body(Some("application/json"), body)
            .send()
            .await;
        response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", None);
    }
}

async fn missing_content_type_is_415(app: TestApp) {
    let body = welcome("in_app", "user-1", "Ada").to_string();
    for content_type in [None, Some("text/plain")] {
        let response = app
            .client
            .post("/notify")
            .body(content_type, body.clone())
            .send()
            .await;
        response.expect_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        );
    }
    assert!(app.recent("").await.is_empty());
}

async fn oversized_body_is_413(app: TestApp) {
    let huge = "x".repeat(HttpLimits::default().max_body + 1);
    let response = app.notify(welcome("in_app", "user-1", &huge)).await;
    response.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None);
    assert!(app.recent("").await.is_empty());
}

async fn failing_sender_is_502_and_unrecorded(app: TestApp) {
    let app = app.rebuilt(DEFAULT_CAPACITY, Some(Channel::Email));

    let response = app.notify(welcome("email", "ada@example.com", "Ada")).await;
    let error = response.expect_error(StatusCode::BAD_GATEWAY, "unavailable", None);
    let message = error["message"].as_str().expect("message");
    assert!(message.contains("email"), "{message}");
    assert!(!message.contains("connection refused"), "{message}");
    assert!(app.recent("").await.is_empty());

    let delivery = app
        .sent(welcome("webhook", "https://hooks.example.com/x", "Ada"))
        .await;
    let history = app.recent("").await;
    assert_eq!(history, vec![delivery]);
}

async fn recent_starts_empty(app: TestApp) {
    let response = app.client.get("/notifications/recent").send().await;
    response.expect_status(StatusCode::OK);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.json(), json!([]));
}

async fn recent_is_oldest_first(app: TestApp) {
    let mut sent = Vec::new();
    for (step, name) in ["Ada", "Grace", "Edsger", "Barbara"]
        .into_iter()
        .enumerate()
    {
        // Two deliveries share a timestamp; the id keeps them in sending order.
        if step != 2 {
            app.clock.advance(Duration::from_millis(10));
        }
        sent.push(app.sent(welcome("in_app", "user-1", name)).await);
    }
    let history = app.recent("").await;
    assert_eq!(history, sent);
    assert_eq!(history[1]["sent_at"], history[2]["sent_at"]);
}

async fn recent_limit_takes_newest(app: TestApp) {
    let mut sent = Vec::new();
    for name in ["Ada", "Grace", "Edsger", "Barbara", "Alan"] {
        app.clock.advance(Duration::from_millis(10));
        sent.push(app.sent(welcome("in_app", "user-1", name)).await);
    }
    assert_eq!(app.recent("?limit=2").await, sent[3..].to_vec());
    assert_eq!(app.recent("?limit=1").await, sent[4..].to_vec());
    assert_eq!(app.recent("?limit=5").await, sent);
    assert_eq!(app.recent("?limit=200").await, sent);
    assert_eq!(app.recent("?limit=").await, sent);
}

async fn recent_rejects_bad_limit(app: TestApp) {
    for query in [
        "?limit=0",
        "?limit=201",
        "?limit=-1",
        "?limit=abc",
        "?limit=1.5",
    ] {
        let response = app
            .client
            .get(&format!("/notifications/recent{query}"))
            .send()
            .await;
        let message = invalid_field_message(&response, "limit");
        assert!(message.contains("1 to 200"), "{message}");
    }
}

async fn ring_drops_oldest(app: TestApp) {
    let app = app.rebuilt(3, None);
    let mut sent = Vec::new();
    for name in ["Ada", "Grace", "Edsger", "Barbara", "Alan"] {
        app.clock.advance(Duration::from_millis(10));
        sent.push(app.sent(welcome("in_app", "user-1", name)).await);
    }

    assert_eq!(app.recent("").await, sent[2..].to_vec());
    assert_eq!(app.recent("?limit=2").await, sent[3..].to_vec());
    let response = app.client.get("/notifications/recent?limit=4").send().await;
    response.expect_error(StatusCode::BAD_REQUEST, "invalid_argument", Some("limit"));

    let sender_ids: Vec<String> = app
        .in_app
        .sent()
        .into_iter()
        .map(|delivery| delivery.id.to_string())
        .collect();
    assert_eq!(
        sender_ids,
        ids(&sent[2..]),
        "the in-memory sender is bounded too"
    );
}

async fn concurrent_notifications_all_recorded(app: TestApp) {
    let requests = (0..12).map(|i| app.notify(welcome("in_app", &format!("user-{i}"), "Ada")));
    let responses = futures::future::join_all(requests).await;
    let mut accepted: Vec<String> = responses
        .iter()
        .map(|response| {
            response.expect_status(StatusCode::ACCEPTED);
            response.json()["id"].as_str().expect("id").to_string()
        })
        .collect();

    let mut recorded = ids(&app.recent("").await);
    accepted.sort();
    recorded.sort();
    assert_eq!(recorded, accepted);
}

async fn methods_are_checked(app: TestApp) {
    let response = app.client.get("/notify").send().await;
    response.expect_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None);
    assert_eq!(response.header("allow"), Some("POST"));

    // Reading history changes nothing, so HEAD returns the GET status without a body.
    let response = app
        .client
        .request(Method::HEAD, "/notifications/recent")
        .send()
        .await;
    response.expect_status(StatusCode::OK);
    assert!(response.body.is_empty());
}

#[tokio::test]
async fn zero_capacity_stops_startup() {
    let settings = Loader::from_values(notification::SERVICE.config, &[("recent_capacity", "0")]);
    let context = platform::server::test_context(
        "notification",
        settings,
        Backend::Memory,
        ManualClock::starting_now(),
    )
    .expect("common settings are valid");
    let Err(error) = (notification::SERVICE.build)(context).await else {
        panic!("a zero capacity must stop startup");
    };
    let message = error.to_string();
    assert!(message.contains("NOTIFY_RECENT_CAPACITY"), "{message}");
}

#[tokio::test]
async fn service_serves_with_default_settings() {
    let settings = Loader::from_values(notification::SERVICE.config, &[]);
    let context = platform::server::test_context(
        "notification",
        settings,
        Backend::Memory,
        ManualClock::starting_now(),
    )
    .expect("common settings are valid");
    let service = (notification::SERVICE.build)(context)
        .await
        .expect("builds");
    let client = TestClient::new(app(
        service.routes,
        Readiness::Always,
        HttpLimits::default(),
    ));

    let response = client
        .post("/notify")
        .json(&welcome("email", "ada@example.com", "Ada"))
        .send()
        .await;
    response.expect_status(StatusCode::ACCEPTED);
    let response = client.get("/notifications/recent").send().await;
    assert_eq!(response.json().as_array().map(Vec::len), Some(1));
}
