-- Argo CD health check for streaming.aep-operator.dev/StreamingConnection and
-- streaming.aep-operator.dev/StreamingDataflow (one script, registered under both kinds' keys).
--
-- For both kinds the operator writes kstatus conditions (Ready, Reconciling, Stalled, each with
-- observedGeneration) plus status.observedGeneration, so this follows kstatus:
--   deleting                                  -> Progressing
--   no status, or status for an older spec    -> Progressing (the operator has not caught up yet)
--   Stalled=True                              -> Degraded (waits for a change to the object or its Secret)
--   Ready=True                                -> Healthy (with the inlet URL, or the flow id)
--   Reconciling=True                          -> Progressing (working, or retrying a transient failure)
--   Ready=False, neither of the two above     -> Degraded for a permanent reason, else Progressing
--
-- Argo CD runs a health customization in a sandbox: gopher-lua (Lua 5.1) with only the base, table
-- and package libraries (`os` only through require("os"), with time and date). `string` and `math`
-- exist only with resource.customizations.useOpenLibs, which this check does not need, so it uses
-- neither: no string.* or math.*, and no string methods such as s:sub(), which need `string` too.
-- tostring, type, pairs, ipairs, `..` and arithmetic are base Lua and always there.
--
-- argocd-cm-patch.yaml carries a copy of this file under each kind's key.
-- deploy/gitops/test-health.sh runs the cases in argocd-health_test.yaml in Argo CD's sandbox
-- (tools/argocd-health, gopher-lua), and also under stock Lua 5.1 and 5.4, and checks that both
-- copies are identical to it.

-- The condition reasons the operator reports for failures that retrying cannot fix: the Reason
-- variants (src/controller/reason.rs) for which Reason::is_permanent is true; a unit test there
-- checks this table against them in both directions. ConnectionNotFound is permanent for a
-- spec.connectionId that does not exist (AdoptedConnectionNotFound) and transient for a connection
-- that vanished mid-reconcile; the
-- operator tells the two apart with Stalled or Reconciling, which are checked first. The operator
-- pairs every permanent reason with Stalled=True, so this table matters only for a status with
-- Ready=False and neither of those. Not here because the operator retries them: AmbiguousCreate,
-- RateLimited, FlowServiceUnavailable, ConcurrentUpdate, KubernetesApiError, NotLeader,
-- ClaimConflict.
local permanent_reasons = {
  CredentialsNotFound = true,    -- Error::CredentialsNotFound
  CredentialsInvalid = true,     -- Error::CredentialsUnusable; FlowErrorKind::Unauthorized, ::Credentials
  PermissionDenied = true,       -- FlowErrorKind::Forbidden
  InvalidSpec = true,            -- Error::InvalidObject; FlowErrorKind::Invalid
  OperatorMisconfigured = true,  -- FlowErrorKind::Configuration
  ConnectionNotFound = true,     -- Error::AdoptedConnectionNotFound (see above)
  ConnectionConflict = true,     -- Error::ConnectionConflict
  ConfigMapConflict = true,      -- Error::ConfigMapConflict
  DatasetNotFound = true,        -- Error::DatasetNotFound (StreamingDataflow)
  ConnectionInUse = true,        -- Error::ConnectionInUse (FLOW-1418-400 on delete)
}

local hs = {}

-- What differs between the kinds: what the operator deletes in Flow Service (or keeps, with
-- deletionPolicy Orphan) before it removes its finalizer, and the status field that sums up a Ready
-- object. Any other kind gets neutral wording rather than a connection's.
local wordings = {
  StreamingConnection = {
    deletes = "the Flow Service connection",
    keeps = "the Flow Service connection",
    ready_field = "inletUrl",
    ready_label = "inlet URL",
  },
  StreamingDataflow = {
    deletes = "the Flow Service flow, then its source and target connections,",
    keeps = "the Flow Service flow and its source and target connections",
    ready_field = "flowId",
    ready_label = "flow",
  },
}
local wording = wordings[obj.kind] or {
  deletes = "what it created in Flow Service",
  keeps = "what it created in Flow Service",
}

local digits = { [0] = "0", "1", "2", "3", "4", "5", "6", "7", "8", "9" }

-- A whole number as digits: Argo CD hands over JSON numbers as floats, so print 3, not 3.0 (what
-- tostring gives in Lua 5.3 and later), without string.format or math.floor (not in the sandbox).
local function integer(number)
  if type(number) ~= "number" or number ~= number or number + 1 == number then
    return tostring(number) -- not a number, NaN, infinite or beyond 2^53
  end
  local rest = number - number % 1 -- math.floor
  local sign = ""
  if rest < 0 then
    sign = "-"
    rest = -rest
  end
  local text = ""
  repeat
    local digit = rest % 10
    text = digits[digit] .. text
    rest = (rest - digit) / 10
  until rest == 0
  return sign .. text
end

-- "Reason: message", or whichever of the two is set.
local function describe(condition)
  local reason = condition.reason or ""
  local message = condition.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if message ~= "" then
    return message
  end
  return reason
end

local metadata = obj.metadata or {}
local spec = obj.spec or {}
local status = obj.status
local generation = metadata.generation

local function waiting_for_generation()
  hs.status = "Progressing"
  if generation ~= nil then
    hs.message = "Waiting for the operator to observe generation " .. integer(generation)
  else
    hs.message = "Waiting for the operator to observe the object"
  end
  return hs
end

-- A condition written for an older generation says nothing about the current spec.
local function is_current(condition)
  return generation == nil or condition.observedGeneration == nil
    or condition.observedGeneration >= generation
end

if metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  if spec.deletionPolicy == "Orphan" then
    hs.message = "Deleting: the operator keeps " .. wording.keeps .. " (deletionPolicy Orphan) and removes its finalizer"
  else
    hs.message = "Deleting: waiting for the operator to delete " .. wording.deletes .. " and remove its finalizer"
  end
  return hs
end

if status == nil or status.observedGeneration == nil then
  return waiting_for_generation()
end
if generation ~= nil and status.observedGeneration < generation then
  return waiting_for_generation()
end

local conditions = {}
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type ~= nil then
      conditions[condition.type] = condition
    end
  end
end
local ready = conditions["Ready"]
local reconciling = conditions["Reconciling"]
local stalled = conditions["Stalled"]

for _, condition in pairs(conditions) do
  if not is_current(condition) then
    return waiting_for_generation()
  end
end

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  local summary = nil
  if wording.ready_field ~= nil then
    summary = status[wording.ready_field]
  end
  if summary ~= nil and summary ~= "" then
    hs.message = "Ready: " .. wording.ready_label .. " " .. tostring(summary)
  else
    hs.message = "Ready"
  end
  -- Ready with another reason: ready, but part of the spec is not applied (UpdateNotAllowed: Adobe
  -- does not allow updating connections in the organization); healthy, and the message says so.
  if ready.reason ~= nil and ready.reason ~= "" and ready.reason ~= "Ready" then
    hs.message = hs.message .. "; " .. describe(ready)
  end
  return hs
end

if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  return hs
end

if ready ~= nil and ready.status == "False" then
  if permanent_reasons[ready.reason or ""] then
    hs.status = "Degraded"
  else
    hs.status = "Progressing"
  end
  hs.message = describe(ready)
  return hs
end

hs.status = "Progressing"
hs.message = "Waiting for the operator to report the Ready condition"
return hs
