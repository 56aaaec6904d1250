// Command argocd-health runs an Argo CD health check against the cases of its health_test.yaml in
// the Lua sandbox of Argo CD's controller (see sandbox.go): gopher-lua with only the base, table
// and package libraries and the safe os, as for a customization in argocd-cm without
// resource.customizations.useOpenLibs.
//
//	go run . -dir ../../deploy/gitops                 the check and cases of deploy/gitops
//	go run . -dir ../../deploy/gitops -script old.lua  another script against the same cases
//
// It prints one "ok    …" or "FAIL  …" line per check and then "N passed, N failed", and exits
// non-zero on any failure. deploy/gitops/test-health.sh runs it.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

// The format of Argo CD's resource_customizations/*/health_test.yaml.
type testFile struct {
	Tests []struct {
		InputPath    string       `json:"inputPath"`
		HealthStatus healthStatus `json:"healthStatus"`
	} `json:"tests"`
}

var passed, failed int

func report(ok bool, name, detail string) {
	if ok {
		passed++
		fmt.Printf("ok    %s: %s\n", name, detail)
	} else {
		failed++
		fmt.Printf("FAIL  %s: %s\n", name, detail)
	}
}

func main() {
	dir := flag.String("dir", ".", "the directory of the check: its tests file and the inputPath files are relative to it")
	scriptPath := flag.String("script", "", "the Lua health check (default: <dir>/argocd-health.lua)")
	testsPath := flag.String("tests", "", "the cases (default: <dir>/argocd-health_test.yaml)")
	useOpenLibs := flag.Bool("use-open-libs", false, "open every library, as resource.customizations.useOpenLibs does")
	flag.Parse()
	if *scriptPath == "" {
		*scriptPath = filepath.Join(*dir, "argocd-health.lua")
	}
	if *testsPath == "" {
		*testsPath = filepath.Join(*dir, "argocd-health_test.yaml")
	}
	label := "gopher-lua"
	if *useOpenLibs {
		label = "gopher-lua+openlibs"
	}

	if !*useOpenLibs {
		checkSandbox(label)
	}
	runCases(label, *dir, *scriptPath, *testsPath, *useOpenLibs)

	fmt.Printf("%d passed, %d failed\n", passed, failed)
	if failed > 0 || passed == 0 {
		os.Exit(1)
	}
}

// checkSandbox makes sure the sandbox is still the one Argo CD has, so that a change to this
// harness (or to gopher-lua) cannot quietly make the cases pass with more than Argo CD offers.
func checkSandbox(label string) {
	probes := []struct {
		what, script, want string
	}{
		{"no string, math, io, os or debug library",
			`return tostring(string) .. " " .. tostring(math) .. " " .. tostring(io) .. " " .. tostring(os) .. " " .. tostring(debug)`,
			"nil nil nil nil nil"},
		{"no string methods",
			`local ok = pcall(function() return ("text"):sub(1, 1) end) return tostring(ok)`,
			"false"},
		{"base, table and package",
			`return type(tostring) .. " " .. type(pairs) .. " " .. type(table.insert) .. " " .. type(require)`,
			"function function function function"},
		{`require("os") has time and date only`,
			`local os = require("os") return type(os.time) .. " " .. type(os.date) .. " " .. type(os.clock) .. " " .. type(os.exit) .. " " .. type(os.getenv)`,
			"function function nil nil nil"},
		{"numbers are floats, printed without .0",
			`return tostring(obj.n) .. " " .. tostring(obj.n / 2)`,
			"3 1.5"},
	}
	for _, probe := range probes {
		got, err := probeSandbox(probe.script)
		name := label + " sandbox"
		switch {
		case err != nil:
			report(false, name, fmt.Sprintf("%s: the probe failed: %v", probe.what, err))
		case got != probe.want:
			report(false, name, fmt.Sprintf("%s: got %q, want %q", probe.what, got, probe.want))
		default:
			report(true, name, probe.what)
		}
	}
}

func probeSandbox(script string) (string, error) {
	l, cancel, err := newSandbox(false)
	if err != nil {
		return "", err
	}
	defer cancel()
	defer l.Close()
	l.SetGlobal("obj", toLua(l, map[string]any{"n": int64(3)}))
	if err := l.DoString(script); err != nil {
		return "", err
	}
	return lua.LVAsString(l.Get(-1)), nil
}

func runCases(label, dir, scriptPath, testsPath string, useOpenLibs bool) {
	source, err := os.ReadFile(scriptPath)
	if err != nil {
		report(false, label, fmt.Sprintf("cannot read the script: %v", err))
		return
	}
	raw, err := os.ReadFile(testsPath)
	if err != nil {
		report(false, label, fmt.Sprintf("cannot read the cases: %v", err))
		return
	}
	var tests testFile
	if err := yaml.Unmarshal(raw, &tests); err != nil {
		report(false, label, fmt.Sprintf("cannot parse %s: %v", testsPath, err))
		return
	}
	if len(tests.Tests) == 0 {
		report(false, label, fmt.Sprintf("%s has no cases", testsPath))
		return
	}
	for _, test := range tests.Tests {
		name := label + " " + test.InputPath
		// Loaded as Argo CD's own health tests load theirs (sigs.k8s.io/yaml into a map): numbers
		// arrive as float64, timestamps as the strings the API server sends.
		input, err := os.ReadFile(filepath.Join(dir, test.InputPath))
		if err != nil {
			report(false, name, fmt.Sprintf("cannot read: %v", err))
			continue
		}
		object := map[string]any{}
		if err := yaml.Unmarshal(input, &object); err != nil {
			report(false, name, fmt.Sprintf("cannot parse: %v", err))
			continue
		}
		got, err := runHealth(string(source), object, useOpenLibs)
		want := test.HealthStatus
		switch {
		case err != nil:
			report(false, name, "the script failed: "+oneLine(err.Error()))
		case *got == want:
			report(true, name, fmt.Sprintf("%s (%s)", got.Status, got.Message))
		default:
			report(false, name, fmt.Sprintf("expected %s (%s), got %s (%s)", want.Status, want.Message, got.Status, got.Message))
		}
	}
}

func oneLine(text string) string {
	return strings.Join(strings.Fields(text), " ")
}
