//! Failure classes and the exit status each one gives (docs/DESIGN.md §9: 0 done,
//! 1 failed, 2 invalid input or usage, 3 refused by a safety guard).

use std::process::ExitCode;

use crate::ranges::ListError;

/// The input is invalid; nothing was changed. Exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

/// A safety guard refused the operation; nothing was changed. Exit status 3.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Exit status for an error: the first class found in its chain decides.
pub fn exit_code(err: &anyhow::Error) -> ExitCode {
    ExitCode::from(exit_status(err))
}

/// [`exit_code`] as a number, for output that reports it (JSON).
pub fn exit_status(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.is::<Refused>() {
            return 3;
        }
        if cause.is::<InvalidInput>() || cause.is::<ListError>() {
            return 2;
        }
    }
    1
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;

    #[test]
    fn classes_survive_context() {
        let refused = Err::<(), _>(Refused("too much".into())).context("refreshing");
        assert_eq!(exit_code(&refused.unwrap_err()), ExitCode::from(3));
        let invalid = Err::<(), _>(InvalidInput("bad".into())).context("attaching");
        assert_eq!(exit_code(&invalid.unwrap_err()), ExitCode::from(2));
        let list = Err::<(), _>(ListError::StdinTwice).context("reading lists");
        assert_eq!(exit_code(&list.unwrap_err()), ExitCode::from(2));
        let other = anyhow::anyhow!("the kernel said no");
        assert_eq!(exit_code(&other), ExitCode::from(1));
    }
}
