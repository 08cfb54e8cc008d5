//! Transport drivers: accept connections and hand byte streams to `conn::serve`.

pub mod tcp;
