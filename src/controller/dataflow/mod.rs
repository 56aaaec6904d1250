//! The StreamingDataflow kind. Today: its pure core (`desired`); its reconcile follows, built on the shared
//! steps of the controller (credentials, crash-safe create, ConfigMap publishing, status, cleanup).

pub mod desired;
