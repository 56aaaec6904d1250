//! The crash-safe create of a dataflow's parts, in Adobe's order: source connection, target
//! connection, mapping set (raw data), flow.
//!
//! Before the first POST a pending marker is stored (with the resourceVersion that was read, so that
//! of two writers only one goes on). The marker names the first part it covers and covers every part
//! after it in that order: the ids the POSTs return are stored together with the final status (or with
//! the failure, when one fails), and the marker goes with them. Whatever stops the operator in between,
//! the next reconcile finds the marker and looks up every part it covers that the status does not
//! record (by name; the flow by its source connection) instead of creating a second one; it stores a
//! marker again before each POST it then makes, as the lookup's window must start before that POST.
//! A create that fails narrows the marker to the failing part, whose send time it records, in the same
//! write that records the ids of the parts before it. A mapping set cannot be looked up (Data Prep
//! has no name to filter on): an interrupted mapping-set create makes a new set and the first stays
//! unused, which costs nothing and duplicates nothing that runs.
//!
//! One marker for the whole create costs one status write where a marker per part cost three; the
//! lookup's window is as safe: every POST under the marker is sent within [`MARKER_REUSE`] of the time
//! the marker records, well inside the settle delay the lookup waits beyond the request timeout.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::{Base, Reconciliation, SHORT_WAIT, Step, desired};
use crate::api::{DataType, DataflowPart, PendingDataflowCreate};
use crate::controller::error::{Error, Result};
use crate::controller::reason::Reason;
use crate::controller::status::Progress;
use aep_flow::{Dataset, Flow, FlowError, FlowErrorKind, MappingRef, Scope};

/// Parts created up to this long before the marker's timestamp still count as candidates when a
/// pending create is resolved: the operator's and Adobe's clocks are not synchronised.
const CLOCK_SKEW_ALLOWANCE_MS: i64 = 5 * 60 * 1000;

/// How long after it was stored a marker still covers a POST of this reconcile without being stored
/// again: far below the settle delay (`CREATE_SETTLE_DELAY`, 30 s) added to the request timeout before
/// an unanswered create is looked up, so that a POST sent later than the marker says is still waited for.
const MARKER_REUSE: Duration = Duration::from_secs(10);

/// A part found by a lookup: its id and when Flow Service says it was created.
pub(super) struct Candidate {
    id: String,
    created_at: Option<i64>,
}

impl DataflowPart {
    /// The part's place in Adobe's order of creation.
    fn position(self) -> u8 {
        match self {
            DataflowPart::SourceConnection => 0,
            DataflowPart::TargetConnection => 1,
            DataflowPart::MappingSet => 2,
            DataflowPart::Flow => 3,
        }
    }

    /// Whether a marker naming this part covers `later`: it does every part from itself on.
    pub(super) fn covers(self, later: DataflowPart) -> bool {
        self.position() <= later.position()
    }

    /// How events and conditions name the part.
    fn label(self) -> &'static str {
        match self {
            DataflowPart::SourceConnection => "source connection",
            DataflowPart::TargetConnection => "target connection",
            DataflowPart::MappingSet => "mapping set",
            DataflowPart::Flow => "flow",
        }
    }
}

impl Reconciliation<'_> {
    /// Creates what is missing of the dataflow and returns its flow, read from Flow Service.
    pub(super) async fn build(
        &mut self,
        scope: &Scope<'_>,
        base: &Base,
        dataset: &Dataset,
    ) -> Result<Step<Flow>> {
        let ctx = self.ctx;
        let object = self.object;
        let mut created = Vec::new();

        let source = desired::new_source_connection(object, &base.connection_id);
        let source_id = match self.status.source_connection_id.clone() {
            Some(id) => id,
            None => {
                let id = done!(
                    self.ensure_part(
                        DataflowPart::SourceConnection,
                        &source.name,
                        || async {
                            let found = ctx
                                .flow
                                .find_source_connections_by_name(scope, &source.name)
                                .await?;
                            Ok(found
                                .into_iter()
                                .filter(|c| c.name == source.name)
                                .map(|c| Candidate {
                                    id: c.id,
                                    created_at: c.created_at,
                                })
                                .collect())
                        },
                        || async {
                            Ok(ctx.flow.create_source_connection(scope, &source).await?.id)
                        },
                    )
                    .await?
                );
                self.status.source_connection_id = Some(id.clone());
                created.push(format!("source connection {id}"));
                id
            }
        };

        let target = desired::new_target_connection(object, dataset);
        let target_id = match self.status.target_connection_id.clone() {
            Some(id) => id,
            None => {
                let id = done!(
                    self.ensure_part(
                        DataflowPart::TargetConnection,
                        &target.name,
                        || async {
                            let found = ctx
                                .flow
                                .find_target_connections_by_name(scope, &target.name)
                                .await?;
                            Ok(found
                                .into_iter()
                                .filter(|c| c.name == target.name)
                                .map(|c| Candidate {
                                    id: c.id,
                                    created_at: c.created_at,
                                })
                                .collect())
                        },
                        || async {
                            Ok(ctx.flow.create_target_connection(scope, &target).await?.id)
                        },
                    )
                    .await?
                );
                self.status.target_connection_id = Some(id.clone());
                created.push(format!("target connection {id}"));
                id
            }
        };

        let mapping = if base.connection.spec.data_type == DataType::Raw {
            let (mapping, fresh) = done!(self.current_mapping(scope, dataset).await?);
            if fresh {
                created.push(format!(
                    "mapping set {} (version {})",
                    mapping.mapping_id, mapping.mapping_version
                ));
            }
            Some(mapping)
        } else {
            None
        };

        if let Some(id) = self.status.flow_id.clone() {
            if let Some(flow) = done!(self.read_flow(scope, &id, &source_id).await?) {
                return Ok(Step::Done(flow));
            }
            // The flow was deleted outside the operator (confirmed): created again, after making
            // sure that its source and target connections are still there.
            if !self.parts_exist(scope).await? {
                // A source or target connection went with the flow: build those again first.
                return Ok(Step::Wait {
                    reason: Reason::Creating,
                    message: "The dataflow's connections were deleted outside the operator; \
                              creating them again"
                        .to_string(),
                    retry_in: Duration::from_millis(100),
                });
            }
        }
        let new_flow = desired::new_flow(object, &source_id, &target_id, mapping);
        let id = done!(
            self.ensure_part(
                DataflowPart::Flow,
                &new_flow.name,
                || async {
                    // The flow reads from this object's own source connection: whatever flow does
                    // is this object's, whatever it is named.
                    let found = ctx
                        .flow
                        .find_flows_by_source_connection(scope, &source_id)
                        .await?;
                    Ok(found
                        .into_iter()
                        .map(|f| Candidate {
                            id: f.id,
                            created_at: f.created_at,
                        })
                        .collect())
                },
                || async { Ok(ctx.flow.create_flow(scope, &new_flow).await?.id) },
            )
            .await?
        );
        let flow_id = id;
        self.status.flow_id = Some(flow_id.clone());
        created.push(format!("flow {flow_id}"));
        self.publish(
            EventType::Normal,
            Reason::Created,
            format!("Created the dataflow: {}", created.join(", ")),
        )
        .await;
        match ctx.flow.get_flow(scope, &flow_id).await {
            Ok(flow) => Ok(Step::Done(flow)),
            // Eventual consistency right after a 201: the id is kept, the next reconcile reads it.
            Err(error) if error.kind() == FlowErrorKind::NotFound => {
                self.write(&Progress::Reconciling {
                    reason: Reason::Creating,
                    message: format!("Created flow {flow_id}; waiting for Flow Service to show it"),
                })
                .await?;
                Ok(Step::Wait {
                    reason: Reason::Creating,
                    message: format!("Created flow {flow_id}; waiting for Flow Service to show it"),
                    retry_in: SHORT_WAIT,
                })
            }
            Err(error) => Err(Error::flow("reading the new flow")(error)),
        }
    }

    /// One part: resumed from an interrupted create (looked up with `lookup`), or created with
    /// `create` under a marker that covers it.
    async fn ensure_part<L, LF, C, CF>(
        &mut self,
        part: DataflowPart,
        name: &str,
        lookup: L,
        create: C,
    ) -> Result<Step<String>>
    where
        L: FnOnce() -> LF,
        LF: Future<Output = Result<Vec<Candidate>, FlowError>>,
        C: FnOnce() -> CF,
        CF: Future<Output = Result<String, FlowError>>,
    {
        let marker = self
            .status
            .pending_create
            .clone()
            .filter(|marker| marker.kind.covers(part));
        // A marker this reconcile stored covers parts it has not tried yet: nothing to look up.
        let stored_here = self.marker_stored_at.filter(|_| marker.is_some());
        if let Some(marker) = &marker
            && stored_here.is_none()
            && part != DataflowPart::MappingSet
        {
            if let Some(wait) = self.settling(marker) {
                return Ok(wait);
            }
            let since = marker.started_at.0.as_millisecond() - CLOCK_SKEW_ALLOWANCE_MS;
            let mut found: Vec<Candidate> = lookup()
                .await
                .map_err(Error::flow(
                    "checking whether an interrupted create went through",
                ))?
                .into_iter()
                .filter(|c| c.created_at.is_none_or(|at| at >= since))
                .collect();
            found.sort_by_key(|c| c.created_at.unwrap_or(i64::MAX));
            if let Some(first) = found.first() {
                let id = first.id.clone();
                info!(part = part.label(), id = %id, "resumed an interrupted create");
                // The marker stays: it may cover later parts, and goes with the final status.
                self.publish(
                    EventType::Normal,
                    Reason::CreateResumed,
                    format!(
                        "Found {} {id} from an interrupted create; using it",
                        part.label()
                    ),
                )
                .await;
                if found.len() > 1 {
                    let extra: Vec<String> = found[1..].iter().map(|c| c.id.clone()).collect();
                    warn!(part = part.label(), ids = %extra.join(", "), "an interrupted create left more than one");
                    self.publish(
                        EventType::Warning,
                        Reason::DuplicateFound,
                        format!(
                            "{} {} named `{name}` were also created since the interrupted create; this \
                             object uses {id}: delete the others in Adobe Experience Platform",
                            part.label(),
                            extra.join(", ")
                        ),
                    )
                    .await;
                }
                return Ok(Step::Done(id));
            }
        }

        let reusable = stored_here.is_some_and(|at| at.elapsed() < MARKER_REUSE);
        // A marker left by an earlier attempt keeps its start: the lookup window only grows.
        let started_at = marker.as_ref().map(|m| m.started_at.clone());
        if !reusable {
            let now = now();
            self.status.pending_create = Some(PendingDataflowCreate {
                kind: part,
                name: name.to_string(),
                started_at: started_at.clone().unwrap_or_else(|| now.clone()),
                attempted_at: Some(now),
            });
            self.ensure_leading()?;
            self.write_claim(
                &Progress::Reconciling {
                    reason: Reason::Creating,
                    message: format!("Creating the {} `{name}`", part.label()),
                },
                "the create-pending marker",
            )
            .await?;
            self.marker_stored_at = Some(std::time::Instant::now());
        }
        self.ensure_leading()?;
        let sent = now();
        let result = create().await;
        let answered = result
            .as_ref()
            .map_or_else(FlowError::was_answered, |_| true);
        self.ctx
            .memory
            .with(&self.uid(), |memory| memory.create_answered = answered);
        match result {
            Ok(id) => {
                info!(part = part.label(), id = %id, "created");
                Ok(Step::Done(id))
            }
            Err(error) => {
                self.status.pending_create = if error.is_permanent() {
                    // Refused for good: the marker claims nothing (the ids of the parts before this
                    // one are in the status written with the failure).
                    None
                } else {
                    // Narrowed to this part, with its send time: the parts before it are recorded
                    // by the same write that stores this marker (the failure's).
                    self.status
                        .pending_create
                        .take()
                        .map(|marker| PendingDataflowCreate {
                            kind: part,
                            name: name.to_string(),
                            started_at: marker.started_at,
                            attempted_at: Some(sent),
                        })
                };
                Err(Error::flow(match part {
                    DataflowPart::SourceConnection => "creating the source connection",
                    DataflowPart::TargetConnection => "creating the target connection",
                    DataflowPart::MappingSet => "creating the mapping set",
                    DataflowPart::Flow => "creating the flow",
                })(error))
            }
        }
    }

    /// While a create whose answer never came may still be committed, a lookup could miss it and
    /// lead to a second create: wait until it has settled.
    fn settling(&self, marker: &PendingDataflowCreate) -> Option<Step<String>> {
        let sent = marker.attempted_at.as_ref().unwrap_or(&marker.started_at);
        let retry_in = self.ctx.unsettled_for(&self.uid(), sent)?;
        Some(Step::Wait {
            reason: Reason::ConfirmingCreate,
            message: format!(
                "A create request for the {} `{}` got no answer and may still be committed; looking \
                 it up once it has settled",
                marker.kind.label(),
                marker.name
            ),
            retry_in,
        })
    }

    /// The mapping set version the flow should use (raw data): the recorded one when it still says
    /// what the spec says, else a new version of it (`PUT`), else a new set. The flag is true for a
    /// new set.
    async fn current_mapping(
        &mut self,
        scope: &Scope<'_>,
        dataset: &Dataset,
    ) -> Result<Step<(MappingRef, bool)>> {
        let wanted = desired::new_mapping_set(self.object, &dataset.schema_ref);
        if let (Some(id), Some(version)) = (
            self.status.mapping_set_id.clone(),
            self.status.mapping_set_version,
        ) {
            let version = u64::try_from(version).unwrap_or(0);
            match self
                .ctx
                .flow
                .get_mapping_set(scope, &id, Some(version))
                .await
            {
                Ok(set) if desired::mapping_is_current(self.object, &set, &dataset.schema_ref) => {
                    return Ok(Step::Done((set.reference(), false)));
                }
                Ok(_) => {
                    self.ensure_leading()?;
                    let updated = self
                        .ctx
                        .flow
                        .update_mapping_set(scope, &id, &wanted)
                        .await
                        .map_err(Error::flow("updating the mapping set"))?;
                    self.status.mapping_set_version =
                        Some(i64::try_from(updated.mapping_version).unwrap_or(i64::MAX));
                    self.publish(
                        EventType::Normal,
                        Reason::Updated,
                        format!(
                            "Updated mapping set {id} to version {} (spec.mapping changed)",
                            updated.mapping_version
                        ),
                    )
                    .await;
                    return Ok(Step::Done((updated, false)));
                }
                Err(error) if error.kind() == FlowErrorKind::NotFound => {
                    warn!(mapping_set_id = %id, "the recorded mapping set is gone; creating a new one");
                    self.status.mapping_set_id = None;
                    self.status.mapping_set_version = None;
                }
                Err(error) => return Err(Error::flow("reading the mapping set")(error)),
            }
        }
        let ctx = self.ctx;
        let id = done!(
            self.ensure_part(
                DataflowPart::MappingSet,
                "mapping set",
                || async { Ok(Vec::new()) },
                || async {
                    let created = ctx.flow.create_mapping_set(scope, &wanted).await?;
                    Ok(format!(
                        "{}/{}",
                        created.mapping_id, created.mapping_version
                    ))
                },
            )
            .await?
        );
        let reference = id;
        let (id, version) = reference
            .split_once('/')
            .map(|(id, version)| (id.to_string(), version.parse::<u64>().unwrap_or(0)))
            .unwrap_or_default();
        self.status.mapping_set_id = Some(id.clone());
        self.status.mapping_set_version = Some(i64::try_from(version).unwrap_or(i64::MAX));
        Ok(Step::Done((
            MappingRef {
                mapping_id: id,
                mapping_version: version,
            },
            true,
        )))
    }

    /// Whether the recorded source and target connections still exist; those that do not are
    /// forgotten, so that the next pass creates them again.
    async fn parts_exist(&mut self, scope: &Scope<'_>) -> Result<bool> {
        let mut all = true;
        if let Some(id) = self.status.source_connection_id.clone() {
            match self.ctx.flow.get_source_connection(scope, &id).await {
                Ok(_) => {}
                Err(error) if error.kind() == FlowErrorKind::NotFound => {
                    self.status.source_connection_id = None;
                    all = false;
                }
                Err(error) => return Err(Error::flow("reading the source connection")(error)),
            }
        }
        if let Some(id) = self.status.target_connection_id.clone() {
            match self.ctx.flow.get_target_connection(scope, &id).await {
                Ok(_) => {}
                Err(error) if error.kind() == FlowErrorKind::NotFound => {
                    self.status.target_connection_id = None;
                    all = false;
                }
                Err(error) => return Err(Error::flow("reading the target connection")(error)),
            }
        }
        Ok(all)
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}
