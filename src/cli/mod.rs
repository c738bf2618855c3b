//! The command line: `serve`, `demo`, `simulate`, `token`, `check-config`, `backup`,
//! `restore`. Parses arguments, sets up logging and calls into the library; no server logic
//! lives here.
//!
//! # Layout
//! `args.rs` (what the command line accepts) at the bottom, `commands.rs` (what each command
//! does) above it, `dispatch.rs` (the entry, [`main`]) on top. This file only declares and
//! re-exports.

mod args;
mod commands;
mod dispatch;

pub use self::args::{Cli, Command, DemoArgs, LogFormat, ServeArgs, SimulateArgs, TokenArgs};
pub use self::dispatch::main;
