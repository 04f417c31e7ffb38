//! Kubernetes services in the dataplane: the pieces a service stage is
//! built from. A service balances new flows over its backends with a
//! weighted Maglev table ([`maglev`]), and a connection table
//! ([`flows`]) keeps every established flow on the backend it was given,
//! whatever changes later. [`Services`] holds a router's services with
//! both; the pipeline's svc-in and svc-out stages use it.

pub mod flows;
pub mod maglev;
mod table;

pub use flows::{Flow, FlowKey, FlowTable, Room, Timeouts};
pub use maglev::Maglev;
pub(crate) use table::{affinity_key, hairpin_key, reply_key};
pub use table::{
    Backend, BackendState, FlowView, ServiceConfig, ServiceCounters, ServiceKind, ServicePort,
    Services, FLOWS_PAGE_WAYS,
};
