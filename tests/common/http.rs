//! A small HTTP/1.1 client for the REST API tests: one connection per request
//! (hyper's client half; the server side is already hyper through axum).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// An answer: status, headers, the body as JSON (Null when empty or not JSON), and raw.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub json: Value,
    pub raw: Bytes,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an error answer: the status, the JSON content type and the code.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> &Self {
        assert_eq!(self.status, status, "{:?}", self.json);
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "errors are JSON: {:?}",
            self.raw
        );
        assert_eq!(self.json["error"], code, "{:?}", self.json);
        assert!(self.json["message"].is_string(), "{:?}", self.json);
        self
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "{:?}", self.json);
        &self.json
    }
}

/// The caller's credential.
#[derive(Clone, Debug)]
pub enum Auth {
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// `X-Api-Key: <key>`.
    Key(String),
}

/// A client of one server as one caller.
#[derive(Clone, Debug)]
pub struct Api {
    pub addr: SocketAddr,
    pub auth: Auth,
}

impl Api {
    pub fn user(addr: SocketAddr, user: &str) -> Api {
        Api {
            addr,
            auth: Auth::Bearer(super::token(user)),
        }
    }

    pub fn key(addr: SocketAddr, key: &str) -> Api {
        Api {
            addr,
            auth: Auth::Key(key.into()),
        }
    }

    pub fn anonymous(addr: SocketAddr) -> Api {
        Api {
            addr,
            auth: Auth::None,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send("GET", path, None, &[]).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send("DELETE", path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.json("POST", path, body).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.json("PUT", path, body).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.json("PATCH", path, body).await
    }

    pub async fn json(&self, method: &str, path: &str, body: Value) -> Resp {
        let bytes = serde_json::to_vec(&body).expect("json");
        self.send(
            method,
            path,
            Some(bytes.into()),
            &[("content-type", "application/json")],
        )
        .await
    }

    /// Any request; `headers` are added after the credential.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Bytes>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let stream = TcpStream::connect(self.addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        match &self.auth {
            Auth::None => {}
            Auth::Bearer(t) => req = req.header("authorization", format!("Bearer {t}")),
            Auth::Key(k) => req = req.header("x-api-key", k.as_str()),
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .expect("request");
        let resp = tokio::time::timeout(super::WAIT, sender.send_request(req))
            .await
            .expect("answer within WAIT")
            .expect("response");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let raw = resp.into_body().collect().await.expect("body").to_bytes();
        let json = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            json,
            raw,
        }
    }
}
