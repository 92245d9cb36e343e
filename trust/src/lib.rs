//! Who may do what on a buildfleet fleet: bearer tokens with roles read
//! from a token file (hashed, reloaded on change), the RPC access table
//! every server checks in one layer, and the client side that presents a
//! token.

mod connect;
mod guard;
pub mod policy;
mod reload;
mod role;
pub mod tls;
mod tokens;

pub use connect::{connect, AuthChannel, Bearer, ClientTrust, ConnectError};
pub use guard::{Guard, Guarded};
pub use reload::{Reloading, POLL_INTERVAL};
pub use role::{Caller, Role, UnknownRole};
pub use tls::{ClientTls, ServerTlsFiles, TlsError};
pub use tokens::{new_token, stored_hash, Grant, TokenFileError, TokenSet, TOKEN_PREFIX};
