//! The Flow Service error codes (`FLOW-<code>-<status>`, the `type` of the error envelope) that a
//! dataflow caller must tell apart from other failures of the same status.
//!
//! Only the public accessors of [`FlowError`] are used, so these questions keep their answers whatever
//! shape the error type takes.

use super::error::{FlowError, TRANSITIONAL_STATE_CODES};

/// A base connection cannot be deleted while one or more flows use it: delete the flows first.
const BASE_CONNECTION_IN_USE_CODE: &str = "1418-400";

/// `PATCH` of connections is not enabled for the organization ("PATCH Connection Feature not
/// enabled", the catalogue's `1445-400`, flow-service-api.md §1.5).
const UPDATE_NOT_ENABLED_CODE: &str = "1445-400";
/// "Invalid query value … provided in query param" (the catalogue's `1453-400`): how Flow Service
/// refuses the value of a query parameter, a `limit` it does not accept among them. (`1451-400`,
/// "Invalid params … provided in query params", is for a parameter it does not know.)
const INVALID_QUERY_VALUE_CODE: &str = "1453-400";

/// Length of a hyphenated UUID, the form of every flow id.
const UUID_LEN: usize = 36;

impl FlowError {
    /// True for `FLOW-1418-400`: the base connection is still used by flows, so it cannot be deleted
    /// yet. [`FlowError::flow_ids_named`] gives the flows when Adobe's message names them; otherwise
    /// [`crate::FlowClient::find_flows_by_base_connection`] finds them.
    pub fn is_base_connection_in_use(&self) -> bool {
        self.has_code(BASE_CONNECTION_IN_USE_CODE)
    }

    /// True for `FLOW-1445-400`: updating connections (`PATCH`) is not enabled for the organization.
    /// Permanent for the organization ([`FlowError::is_permanent`] is true): the change cannot be
    /// applied, but the connection itself is fine, so a caller reports the change as not applied
    /// and carries on with everything else rather than failing the object or retrying.
    pub fn is_update_not_enabled(&self) -> bool {
        self.has_code(UPDATE_NOT_ENABLED_CODE)
    }

    /// True for `FLOW-1453-400`: the value of a query parameter was refused (the client retries a
    /// list once with a smaller `limit` when it gets this).
    pub fn is_invalid_query_value(&self) -> bool {
        self.has_code(INVALID_QUERY_VALUE_CODE)
    }

    /// True for the 400s of an object in a transitional state (`1416`, `1420`, `1421`, `1457`,
    /// `1458`): the client classifies them as transient ([`FlowError::is_permanent`] is false), and
    /// this tells them apart from an outage. Back off and retry.
    pub fn is_transitional_state(&self) -> bool {
        TRANSITIONAL_STATE_CODES
            .iter()
            .any(|code| self.has_code(code))
    }

    /// The UUIDs Adobe's error message names, in order and without repeats, leaving out `except`
    /// (the id of the object the request was about, which the message may name too). For
    /// `FLOW-1418-400` these are the flows that use the base connection, when Adobe lists them.
    ///
    /// Read from the message the error keeps (at most 300 characters, credential values scrubbed), so
    /// a long list may be cut short: treat the ids as a hint and list the flows to be sure.
    pub fn flow_ids_named(&self, except: &str) -> Vec<String> {
        let Some(message) = self
            .details()
            .and_then(|details| details.message.as_deref())
        else {
            return Vec::new();
        };
        let mut ids: Vec<String> = Vec::new();
        let bytes = message.as_bytes();
        let mut at = 0;
        while at + UUID_LEN <= bytes.len() {
            let candidate = message.get(at..at + UUID_LEN);
            let boundary = |index: Option<usize>| {
                index
                    .and_then(|index| bytes.get(index))
                    .is_none_or(|byte| !byte.is_ascii_hexdigit() && *byte != b'-')
            };
            match candidate {
                Some(id)
                    if uuid::Uuid::try_parse(id).is_ok()
                        && id.as_bytes()[8] == b'-'
                        && boundary(at.checked_sub(1))
                        && boundary(Some(at + UUID_LEN)) =>
                {
                    let id = id.to_ascii_lowercase();
                    if !id.eq_ignore_ascii_case(except) && !ids.contains(&id) {
                        ids.push(id);
                    }
                    at += UUID_LEN;
                }
                _ => at += 1,
            }
        }
        ids
    }

    fn has_code(&self, wanted: &str) -> bool {
        self.error_code().is_some_and(|code| code.ends_with(wanted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorDetails;
    use crate::observer::Operation;

    fn error(status: u16, body: &str) -> FlowError {
        let details = ErrorDetails::from_response(status, body.as_bytes(), None);
        FlowError::from_status(Operation::Delete, status, details, None)
    }

    const BASE: &str = "a59d368a-1152-4673-a46e-bd52e8cdb9a9";

    #[test]
    fn a_1418_names_the_flows_that_use_the_base_connection() {
        let error = error(
            400,
            &format!(
                r#"{{"type":"https://ns.adobe.com/aep/errors/FLOW-1418-400","title":"Bad Request","status":400,
                "report":{{"detailed-message":"The base connection {BASE} cannot be deleted because it is used in flows [F2AE0194-8bd8-4a40-a4d9-f07bdc3e6ce2, 9830305a-985f-47d0-b030-5a5bd5a1ea6e]. Delete the flows first.","request-id":"r"}}}}"#
            ),
        );
        assert!(error.is_base_connection_in_use());
        assert!(!error.is_transitional_state());
        assert!(error.is_permanent());
        assert_eq!(error.error_code(), Some("FLOW-1418-400"));
        assert_eq!(
            error.flow_ids_named(&BASE.to_ascii_uppercase()),
            [
                "f2ae0194-8bd8-4a40-a4d9-f07bdc3e6ce2",
                "9830305a-985f-47d0-b030-5a5bd5a1ea6e"
            ]
        );
    }

    #[test]
    fn a_1418_without_ids_names_none() {
        let error = error(
            400,
            r#"{"type":"https://ns.adobe.com/aep/errors/FLOW-1418-400","errorMessage":"in use by one or more flows"}"#,
        );
        assert!(error.is_base_connection_in_use());
        assert!(error.flow_ids_named(BASE).is_empty());
        // Longer hex runs are not UUIDs.
        let long = error_with_message(&format!("x{BASE}0 and 0{BASE}"));
        assert!(long.flow_ids_named("").is_empty());
    }

    fn error_with_message(message: &str) -> FlowError {
        error(400, &serde_json::json!({ "message": message }).to_string())
    }

    #[test]
    fn a_1445_is_an_update_the_organization_does_not_allow() {
        let error = FlowError::from_status(
            Operation::Update,
            400,
            ErrorDetails::from_response(
                400,
                br#"{"type":"https://ns.adobe.com/aep/errors/FLOW-1445-400","title":"Bad Request","status":400,
                "report":{"detailed-message":"PATCH Connection Feature not enabled"}}"#,
                None,
            ),
            None,
        );
        assert!(error.is_update_not_enabled());
        assert!(error.is_permanent());
        assert!(!error.is_transitional_state());
        assert!(!error.is_invalid_query_value());
        let other = error_with_message("PATCH Connection Feature not enabled");
        assert!(
            !other.is_update_not_enabled(),
            "the code decides, not the text"
        );
    }

    #[test]
    fn a_1453_is_a_refused_query_value() {
        let error = FlowError::from_status(
            Operation::List,
            400,
            ErrorDetails::from_response(
                400,
                br#"{"type":"https://ns.adobe.com/aep/errors/FLOW-1453-400","title":"Invalid request","status":400}"#,
                None,
            ),
            None,
        );
        assert!(error.is_invalid_query_value());
        assert!(!error.is_update_not_enabled());
    }

    #[test]
    fn transitional_states_are_transient_and_other_400s_are_not() {
        for code in ["1416", "1420", "1421", "1457", "1458"] {
            let error = error(
                400,
                &format!(r#"{{"type":"https://ns.adobe.com/aep/errors/FLOW-{code}-400"}}"#),
            );
            assert!(error.is_transitional_state(), "{code}");
            assert!(!error.is_permanent(), "{code}");
            assert!(!error.maybe_committed(), "{code}");
            assert!(!error.is_base_connection_in_use(), "{code}");
        }
        let other = error(
            400,
            r#"{"type":"https://ns.adobe.com/aep/errors/FLOW-1425-400"}"#,
        );
        assert!(!other.is_transitional_state());
        assert!(other.is_permanent());
        assert_eq!(other.kind(), crate::error::FlowErrorKind::Invalid);
    }
}
