//! Starting one job: fork/exec with the hygiene of SPEC 5 (new session, `/dev/null` stdin,
//! stdout/stderr pipes, no other fd, empty signal mask, default dispositions, identity drop).
