//! Runnable examples of reauth, one concept each; see `README.md` here.
//!
//! This library only holds what the seed-backend examples share: a tiny
//! stand-in for the backends of the articles the project grew from, on
//! 127.0.0.1, with one-time refresh tokens and a counter of refreshes.

pub mod seed_backend;
