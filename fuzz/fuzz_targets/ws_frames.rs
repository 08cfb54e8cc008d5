//! The WebSocket bridge's inbound side (`src/transport/ws.rs`): the bytes a
//! browser can send after the HTTP upgrade, read by yawc as the server with
//! the options `/ws` uses, through the bridge's `Payloads` (binary messages
//! to frame payloads, text/oversize/protocol errors to close codes), each
//! payload then decoded as a client frame as the connection would.
//! Over memory (`tokio::io::join` of the input and a sink), so no socket.
//!
//! It checks: no payload above `max_frame` gets through; an error ends the
//! stream and picks a documented close code (1000 for a read error, 1002,
//! 1003, 1009); a clean end leaves 1000.
//!
//! Input: byte 0 bit 0 turns permessage-deflate on (negotiated without
//! context takeover, the default), bits 1-2 pick `max_frame`; the rest is
//! the client's bytes (frames must be masked, as from a browser).

#![no_main]

use futures_util::StreamExt;
use libfuzzer_sys::fuzz_target;
use roomcast::config::Config;
use roomcast::proto::ClientFrame;
use roomcast::transport::ws::{close_code, inbound};
use std::sync::OnceLock;

const DEFLATE: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

fn configs() -> &'static [Config] {
    static C: OnceLock<Vec<Config>> = OnceLock::new();
    C.get_or_init(|| {
        (0..8u8)
            .map(|bits| {
                let mut c = Config::for_tests("/nonexistent");
                c.ws_compression = bits & 1 == 1;
                c.max_frame = [64, 1024, 65_536, c.max_frame][usize::from(bits >> 1)];
                c
            })
            .collect()
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static R: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    R.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, bytes)) = data.split_first() else {
        return;
    };
    let config = &configs()[usize::from(head & 7)];
    let extensions = config.ws_compression.then_some(DEFLATE);
    runtime().block_on(async {
        let io = tokio::io::join(bytes, tokio::io::sink());
        let mut payloads = inbound(io, config, extensions).expect("options and extensions agree");
        while let Some(item) = payloads.next().await {
            match item {
                Ok(p) => {
                    assert!(
                        p.len() <= config.max_frame,
                        "a message above max_frame got through"
                    );
                    let _ = ClientFrame::decode(&p);
                }
                Err(_) => {
                    let code = payloads.close_code();
                    assert!(
                        [
                            close_code::NORMAL,
                            close_code::PROTOCOL,
                            close_code::UNSUPPORTED,
                            close_code::POLICY,
                            close_code::SIZE
                        ]
                        .contains(&code),
                        "close code {code}"
                    );
                    assert!(payloads.next().await.is_none(), "items after an error");
                    return;
                }
            }
        }
        assert_eq!(payloads.close_code(), close_code::NORMAL);
    });
});
