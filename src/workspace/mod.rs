//! Workspaces on disk: the typed model of workspace.toml, validated loading, edits that keep comments, atomic saves.

mod adopt;
mod edit;
mod error;
mod inputs;
mod lane_api;
mod load;
mod model;
mod models;
mod raw;
pub mod store;

pub use edit::{LaneEdit, MAX_SEED, stop_array};
pub use error::{WorkspaceError, line_col};
pub use inputs::{SavedInput, input_from_file, load_inputs, save_new_input};
pub use lane_api::MAX_RETRIES;
pub use load::{WORKSPACE_FILE, load, parse};
pub use model::*;
pub use models::valid_device;
