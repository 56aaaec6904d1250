//! Shared fixtures for the integration tests. Each test binary uses a part of them.
#![allow(dead_code)]

pub mod cluster;
pub mod emulator;
pub mod fake_apiserver;
