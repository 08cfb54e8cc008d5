//! The receiving end of node links: accepts peers, answers their requests.

use super::{codec, decode, encode, LinkSettings, KIND_REQUEST, KIND_RESPONSE};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use std::future::Future;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

/// Answers written per write call at most.
const WRITE_BATCH: usize = 64;

/// Accepts peer links on `listener` until `shutdown`; each request's body is
/// passed to `handler`, whose output is the answer. Connections beyond
/// [`LinkSettings::max_peers`] are closed at once.
pub async fn serve<H, F>(
    listener: TcpListener,
    handler: H,
    settings: LinkSettings,
    shutdown: CancellationToken,
) where
    H: Fn(Bytes) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Bytes> + Send + 'static,
{
    let peers = Arc::new(Semaphore::new(settings.max_peers.max(1)));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: keep accepting.
                tracing::warn!(error = %e, "node link accept failed");
                continue;
            }
        };
        let Ok(permit) = peers.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "node link refused: too many peers");
            continue;
        };
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let why = tokio::select! {
                _ = shutdown.cancelled() => "shutdown".to_string(),
                why = connection(stream, handler, settings) => why,
            };
            tracing::info!(%peer, %why, "node link closed");
            drop(permit);
        });
    }
}

/// Serves one peer connection; returns why it ended.
async fn connection<H, F>(stream: TcpStream, handler: H, settings: LinkSettings) -> String
where
    H: Fn(Bytes) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Bytes> + Send + 'static,
{
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let in_flight = settings.server_in_flight.max(1);
    let permits = Arc::new(Semaphore::new(in_flight));
    let (answers, mut answers_rx) = mpsc::channel::<(u64, Bytes)>(in_flight);
    let reader = async {
        let mut frames = FramedRead::new(read, codec(settings.max_frame));
        loop {
            let frame = match frames.next().await {
                None => return "closed by the peer".to_string(),
                Some(Err(e)) => return e.to_string(),
                Some(Ok(frame)) => frame,
            };
            let Some((id, kind, body)) = decode(&frame) else {
                return "undecodable frame".into();
            };
            if kind != KIND_REQUEST {
                return format!("unexpected frame kind {kind}");
            }
            // At the bound, stop reading until an answer is out.
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return "closed".into();
            };
            let answers = answers.clone();
            let answer = handler(body);
            tokio::spawn(async move {
                let body = answer.await;
                let _ = answers.send((id, body)).await;
                drop(permit);
            });
        }
    };
    let writer = async {
        let mut codec = codec(settings.max_frame);
        let mut buf = BytesMut::new();
        while let Some(first) = answers_rx.recv().await {
            let mut next = Some(first);
            let mut n = 0;
            while let Some((id, body)) = next.take() {
                if encode(&mut codec, id, KIND_RESPONSE, &body, &mut buf).is_err() {
                    // The caller times out; the link stays up.
                    tracing::warn!(id, len = body.len(), "node link answer too large");
                }
                n += 1;
                if n < WRITE_BATCH {
                    next = answers_rx.try_recv().ok();
                }
            }
            if let Err(e) = write.write_all(&buf).await {
                return e.to_string();
            }
            buf.clear();
        }
        "closed".to_string()
    };
    tokio::select! {
        why = reader => why,
        why = writer => why,
    }
}
