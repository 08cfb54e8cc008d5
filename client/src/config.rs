//! How a [`crate::Client`] connects and behaves: endpoint, token provider,
//! backoff, queue bounds and file, buffers and deadlines.

use crate::backoff::Backoff;
use crate::dial::Endpoint;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

type TokenFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// Supplies the JWT for each `hello`: called before every connection
/// attempt, so a refreshed token is used after a reconnect.
#[derive(Clone)]
pub struct TokenProvider(Arc<dyn Fn() -> TokenFuture + Send + Sync>);

impl TokenProvider {
    /// A provider calling `f` (an async closure returning the token or an error text).
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        TokenProvider(Arc::new(move || Box::pin(f())))
    }

    /// Always the same token.
    pub fn fixed(token: impl Into<String>) -> Self {
        let token: String = token.into();
        TokenProvider::new(move || std::future::ready(Ok(token.clone())))
    }

    pub(crate) async fn get(&self) -> Result<String, String> {
        (self.0)().await
    }
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenProvider")
    }
}

#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub endpoint: Endpoint,
    pub token: TokenProvider,
    pub backoff: Backoff,
    /// Most unacknowledged sends held (default 1000); beyond it `send`
    /// fails with `Error::QueueFull`.
    pub queue_capacity: usize,
    /// Mirror the offline queue to this file (MessagePack) and load it at
    /// start, so queued messages survive an app restart. Default: none.
    pub queue_file: Option<PathBuf>,
    /// Events buffered for the app (default 1024). When the app stops reading,
    /// the client stops reading the socket; the server then disconnects it as
    /// a slow consumer and the client resumes once the app reads again.
    pub event_buffer: usize,
    /// How long a request waits for a connection plus its reply (default 30 s).
    pub request_timeout: Duration,
    /// Deadline of one connection attempt: dial, TLS, `hello` (default 10 s).
    pub connect_timeout: Duration,
    /// Sends written ahead of their acknowledgements (default 256).
    pub send_window: usize,
    /// Ask for the room list right after `welcome` (`Event::RoomList`).
    pub sync_rooms: bool,
}

impl ClientConfig {
    /// Defaults, with a fixed token.
    pub fn new(endpoint: Endpoint, token: impl Into<String>) -> Self {
        ClientConfig::with_token_provider(endpoint, TokenProvider::fixed(token))
    }

    /// Defaults, with a token provider (refresh).
    pub fn with_token_provider(endpoint: Endpoint, token: TokenProvider) -> Self {
        ClientConfig {
            endpoint,
            token,
            backoff: Backoff::default(),
            queue_capacity: 1000,
            queue_file: None,
            event_buffer: 1024,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            send_window: 256,
            sync_rooms: false,
        }
    }
}
