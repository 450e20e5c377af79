//! The pipeline's stages, each a small unit with its own tests. Their
//! order is composed in one place only: `crate::pipeline`.

pub mod accel;
pub mod body_pace;
pub mod cache;
pub mod compress;
pub mod exchange;
pub mod forward;
pub mod inspect_budget;
pub mod login;
pub mod normalize;
pub mod plain_http;
pub mod request_body;
pub mod respond;
pub mod route;
pub mod site;
pub mod static_file;
