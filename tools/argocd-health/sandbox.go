package main

// The Lua sandbox Argo CD runs a resource health customization in, rebuilt from
// util/lua/lua.go and util/lua/oslib_safe.go of github.com/argoproj/argo-cd (VM.runLua,
// VM.ExecuteHealthLua, decodeValue, OpenSafeOs, SafeOsLoader; checked against the v3 sources).
//
// What Argo CD does for a customization from argocd-cm without
// resource.customizations.useOpenLibs.<group_kind>:
//   - lua.NewState(lua.Options{SkipOpenLibs: true}): no library at all, not even the string
//     metatable, so "s:sub(1)" fails as well as string.sub;
//   - opens package, base and table (in that order) through CallByParam;
//   - "opens" its safe os with RegisterModule(TabLibName, …). The table module is already loaded,
//     so that call returns it unchanged: there is no global `os`. The safe os (time and date only)
//     is reachable through require("os"), from PreloadModule;
//   - gives the script one second (a context with a timeout);
//   - sets the globals actionParams (empty for a health check) and obj;
//   - runs the script and turns the value it returns into a health status through JSON.
// The built-in checks in Argo CD's resource_customizations/ run with every library open, and so do
// Argo CD's own tests of them; that is why a check can pass those tests and fail in the controller.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
)

// healthStatus is what Argo CD reads from the table the script returns (health.HealthStatus).
type healthStatus struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

// Argo CD's health status codes (health.HealthStatusCode); any other status becomes Unknown.
var validStatuses = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true, "Healthy": true, "Degraded": true, "Missing": true,
}

const invalidHealthStatus = "Lua returned an invalid health status"

// scriptTimeout is the time Argo CD gives a script.
const scriptTimeout = time.Second

// newSandbox returns a Lua state set up the way Argo CD sets one up; useOpenLibs is the
// resource.customizations.useOpenLibs setting. The caller closes the state.
func newSandbox(useOpenLibs bool) (*lua.LState, context.CancelFunc, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: !useOpenLibs})
	opens := []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	}
	for _, lib := range opens {
		err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name))
		if err != nil {
			l.Close()
			return nil, nil, fmt.Errorf("opening %s: %w", lib.name, err)
		}
	}
	l.PreloadModule(lua.OsLibName, safeOsLoader)
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	l.SetContext(ctx)
	return l, cancel, nil
}

// The functions of Argo CD's safe os: time and date, nothing that exits, reads files or runs
// programs. They exist here so that require("os") behaves as it does in Argo CD; the health check
// does not use them, so date supports only the "*t" table and the default format.
var safeOsFuncs = map[string]lua.LGFunction{
	"time": safeOsTime,
	"date": safeOsDate,
}

// openSafeOs registers the safe os the way Argo CD does: under the name of the table library
// (lua.TabLibName), which is already loaded, so nothing is added and no global `os` appears.
func openSafeOs(l *lua.LState) int {
	l.Push(l.RegisterModule(lua.TabLibName, safeOsFuncs))
	return 1
}

// safeOsLoader is what require("os") returns: a table with time and date.
func safeOsLoader(l *lua.LState) int {
	l.Push(l.SetFuncs(l.NewTable(), safeOsFuncs))
	return 1
}

func safeOsTime(l *lua.LState) int {
	if l.GetTop() == 0 {
		l.Push(lua.LNumber(time.Now().Unix()))
		return 1
	}
	fields := l.CheckTable(1)
	field := func(name string, fallback int) int {
		if number, ok := fields.RawGetString(name).(lua.LNumber); ok {
			return int(number)
		}
		return fallback
	}
	when := time.Date(field("year", -1), time.Month(field("month", -1)), field("day", -1),
		field("hour", 12), field("min", 0), field("sec", 0), 0, time.Local)
	l.Push(lua.LNumber(when.Unix()))
	return 1
}

func safeOsDate(l *lua.LState) int {
	format := l.OptString(1, "%c")
	when := time.Now()
	if len(format) > 0 && format[0] == '!' {
		when = when.UTC()
		format = format[1:]
	}
	if l.GetTop() >= 2 {
		when = time.Unix(l.CheckInt64(2), 0)
	}
	if len(format) >= 2 && format[:2] == "*t" {
		fields := l.NewTable()
		for name, value := range map[string]int{
			"year": when.Year(), "month": int(when.Month()), "day": when.Day(), "hour": when.Hour(),
			"min": when.Minute(), "sec": when.Second(), "wday": int(when.Weekday()) + 1, "yday": 0,
		} {
			fields.RawSetString(name, lua.LNumber(value))
		}
		fields.RawSetString("isdst", lua.LFalse)
		l.Push(fields)
		return 1
	}
	l.Push(lua.LString(when.Format("02 Jan 06 15:04 MST")))
	return 1
}

// toLua converts a decoded object the way Argo CD's decodeValue does: every number (float64 from
// JSON, int64 in the controller) becomes an LNumber (a float64), a json.Number a string, a list a
// table with keys 1..n, a map a table with string keys, and anything else nil.
func toLua(l *lua.LState, value any) lua.LValue {
	switch value := value.(type) {
	case bool:
		return lua.LBool(value)
	case float64:
		return lua.LNumber(value)
	case int:
		return lua.LNumber(value)
	case int32:
		return lua.LNumber(value)
	case int64:
		return lua.LNumber(value)
	case string:
		return lua.LString(value)
	case json.Number:
		return lua.LString(value)
	case []any:
		list := l.CreateTable(len(value), 0)
		for _, item := range value {
			list.Append(toLua(l, item))
		}
		return list
	case map[string]any:
		table := l.CreateTable(0, len(value))
		for key, item := range value {
			table.RawSetH(lua.LString(key), toLua(l, item))
		}
		return table
	default:
		return lua.LNil
	}
}

// runHealth runs a health script against an object as Argo CD's controller does, and returns the
// health status Argo CD would record, or the error it would report.
func runHealth(script string, object map[string]any, useOpenLibs bool) (*healthStatus, error) {
	l, cancel, err := newSandbox(useOpenLibs)
	if err != nil {
		return nil, err
	}
	defer cancel()
	defer l.Close()
	l.SetGlobal("actionParams", l.CreateTable(0, 0))
	l.SetGlobal("obj", toLua(l, object))
	fn, err := l.LoadString(script)
	if err == nil {
		l.Push(fn)
		err = l.PCall(0, lua.MultRet, nil)
	}
	if err != nil {
		// Argo CD drops the Lua stack trace from the run-time errors it shows.
		var apiErr *lua.ApiError
		if errors.As(err, &apiErr) && apiErr.Type == lua.ApiErrorRun {
			apiErr.StackTrace = ""
			return nil, apiErr
		}
		return nil, err
	}

	returned := l.Get(-1)
	switch returned.Type() {
	case lua.LTNil:
		return &healthStatus{}, nil
	case lua.LTTable:
	default:
		return nil, fmt.Errorf("expect table output from Lua script, not %s", returned.Type())
	}
	encoded, err := luajson.Encode(returned)
	if err != nil {
		return nil, err
	}
	status := &healthStatus{}
	if err := json.Unmarshal(encoded, status); err != nil {
		// An empty table encodes as [], which Argo CD takes for an empty status.
		typeErr := &json.UnmarshalTypeError{Value: "array", Type: reflect.TypeFor[*healthStatus]()}
		if errors.As(err, &typeErr) {
			return &healthStatus{}, nil
		}
		return nil, err
	}
	if !validStatuses[status.Status] {
		return &healthStatus{Status: "Unknown", Message: invalidHealthStatus}, nil
	}
	return status, nil
}
