//! Shared by the fuzz targets: the protocol vectors of `proto-spec/vectors.json`,
//! parsed once.

use std::sync::OnceLock;

/// One vector: its name, and its bytes with the 4-byte length header.
pub struct Vector {
    pub name: String,
    pub framed: Vec<u8>,
}

impl Vector {
    /// The payload (the bytes after the length header).
    pub fn payload(&self) -> &[u8] {
        self.framed.get(4..).unwrap_or_default()
    }
}

struct Vectors {
    client: Vec<Vector>,
    server: Vec<Vector>,
    token: String,
}

fn vectors() -> &'static Vectors {
    static V: OnceLock<Vectors> = OnceLock::new();
    V.get_or_init(|| {
        let text = include_str!("../../proto-spec/vectors.json");
        let json: serde_json::Value = serde_json::from_str(text).expect("vectors.json parses");
        let mut v = Vectors {
            client: Vec::new(),
            server: Vec::new(),
            token: String::new(),
        };
        for x in json["vectors"].as_array().expect("a vectors array") {
            let vector = Vector {
                name: x["name"].as_str().unwrap_or_default().to_string(),
                framed: hex::decode(x["hex"].as_str().unwrap_or_default()).expect("hex"),
            };
            if vector.name == "hello" {
                v.token = x["decoded"]["token"].as_str().expect("token").to_string();
            }
            match x["direction"].as_str() {
                Some("client_to_server") => v.client.push(vector),
                _ => v.server.push(vector),
            }
        }
        assert!(!v.client.is_empty() && !v.token.is_empty());
        v
    })
}

/// The client-to-server vectors.
pub fn client_vectors() -> &'static [Vector] {
    &vectors().client
}

/// The server-to-client vectors.
pub fn server_vectors() -> &'static [Vector] {
    &vectors().server
}

/// The vectors' `hello` token: `{"sub":"alice","exp":4102444800}`, HS256 with
/// [`VECTOR_SECRET`].
pub fn vector_token() -> &'static str {
    &vectors().token
}

/// The secret the vectors' token is signed with (tests/vectors.rs).
pub const VECTOR_SECRET: &[u8] = b"roomcast-vector-secret";
