//! APIs of other face services, for clients written against them (`facegate serve --compat`).
//! Each speaks its original's routes, fields and answer shapes over facegate's application
//! service, so decisions, limits, roles and the audit log are the native API's.

pub mod compreface;
pub mod deepstack;
