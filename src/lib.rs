//! aep-streaming-operator: manages Adobe Experience Platform streaming connections as Kubernetes objects.
//!
//! Modules, in the order the data flows:
//! - [`emulator`]: `aep-emulator`, a local stand-in for IMS, Flow Service and the streaming inlet
//!   (knows nothing of Kubernetes or of the client).
//! - [`flow`]: the Flow Service and IMS client (knows nothing of Kubernetes).

pub mod emulator;
pub mod flow;
