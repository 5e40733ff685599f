//! Generating load from a [`Plan`](crate::plan::Plan): worker threads
//! ([`worker`]), open-loop pacing ([`pacing`]) and coordinated-omission
//! correction ([`record`]), the main thread's collection
//! loop ([`run`]), file-descriptor limits ([`limits`]) and the pre-flight
//! probe that turns a bad target into a clear error ([`probe`]).

pub mod limits;
pub mod pacing;
pub mod probe;
pub mod record;
pub mod run;
pub mod worker;
