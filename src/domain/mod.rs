//! The vocabulary of Herald: ids, timestamps and the records it keeps (applications, event types,
//! endpoints, tokens), with the validation rules that hold whatever the transport.
//! Pure code: no I/O, no knowledge of sled, warp or reqwest.

pub mod filter;
pub mod ids;
pub mod message;
pub mod model;
pub mod time;
pub mod token;
pub mod validate;

pub use ids::{AppId, AttemptId, EndpointId, IdError, MessageId, TaskId};
pub use message::*;
pub use model::*;
pub use time::Timestamp;
pub use validate::ValidationError;
