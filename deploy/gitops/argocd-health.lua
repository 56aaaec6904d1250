-- Argo CD health check for streaming.aep-operator.dev/StreamingConnection.
--
-- The operator writes kstatus conditions (Ready, Reconciling, Stalled, each with observedGeneration)
-- plus status.observedGeneration, so this follows kstatus:
--   deleting                                  -> Progressing
--   no status, or status for an older spec    -> Progressing (the operator has not caught up yet)
--   Stalled=True                              -> Degraded (waits for a change to the object or its Secret)
--   Ready=True                                -> Healthy
--   Reconciling=True                          -> Progressing (working, or retrying a transient failure)
--   Ready=False, neither of the two above     -> Degraded for a permanent reason, else Progressing
--
-- argocd-cm-patch.yaml carries a copy of this file; deploy/gitops/test-health.sh runs the cases in
-- argocd-health_test.yaml and checks that the copy is identical. Written for Lua 5.1 (Argo CD's
-- gopher-lua) and tested with 5.1 and 5.4.

local hs = {}

-- Reasons the operator reports only for failures that retrying cannot fix (Error::is_permanent in
-- src/controller/error.rs). The operator pairs them with Stalled=True, so this table matters only
-- for a status written without Reconciling or Stalled.
local permanent_reasons = {
  CredentialsNotFound = true,
  CredentialsInvalid = true,
  PermissionDenied = true,
  InvalidSpec = true,
  OperatorMisconfigured = true,
  ConnectionConflict = true,
  ConfigMapConflict = true,
  AmbiguousCreate = true,
}

-- Argo CD hands over JSON numbers as floats: print 3, not 3.0.
local function integer(number)
  return string.format("%d", math.floor(number))
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
    hs.message = "Deleting: the operator keeps the Flow Service connection (deletionPolicy Orphan) and removes its finalizer"
  else
    hs.message = "Deleting: waiting for the operator to delete the Flow Service connection and remove its finalizer"
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
  if status.inletUrl ~= nil and status.inletUrl ~= "" then
    hs.message = "Ready: inlet URL " .. status.inletUrl
  else
    hs.message = "Ready"
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
