//! aep-streaming-operator: manages Adobe Experience Platform streaming connections as Kubernetes objects.
//!
//! Modules, in the order the data flows:
//! - [`api`]: the `StreamingConnection` custom resource, as users write it.
//! - [`cli`]: the command line and its `AEP_*` environment variables.
//! - [`flow`]: the Flow Service and IMS client (knows nothing of Kubernetes).
//! - [`emulator`]: `aep-emulator`, a local stand-in for IMS, Flow Service and the streaming inlet
//!   (knows nothing of Kubernetes or of the client).

pub mod api;
pub mod cli;
pub mod emulator;
pub mod flow;
