//! The network as a flat list of ops over planned buffers.
//!
//! `model/` lowers a BERT head into a [`Plan`] for one input shape: every buffer is named
//! and sized before anything runs, and each op names the buffers and weights it reads and
//! writes. A backend executes the ops in order; it never re-implements the network.

pub mod op;
mod plan;

pub use op::{Op, Relative};
pub use plan::{BufDesc, BufId, Plan, PlanBuilder, PlanOutput, Planner, Shape};
