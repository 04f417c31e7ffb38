//! Kubernetes services in the dataplane: the pieces a service stage is
//! built from. A service balances new flows over its backends with a
//! weighted Maglev table ([`maglev`]), and a connection table
//! ([`flows`]) keeps every established flow on the backend it was given,
//! whatever changes later.

pub mod flows;
pub mod maglev;

pub use flows::{Flow, FlowKey, FlowTable, Room, Timeouts};
pub use maglev::Maglev;
