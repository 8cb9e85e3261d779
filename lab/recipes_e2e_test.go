package lab_test

import (
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// recipeScenario is the user's scenario the recipes run: short, on the
// minimal topology that sits beside it in the user's repository.
const recipeScenario = `name: recipe-smoke
description: What a user's repository would hold; kill an LB4 under load.
topology: ../topologies/minimal.yaml
load: {workers: 20, seed: 3}
steps:
  - load: start
  - sleep: 3s
  - kill: lb4-2
  - sleep: 5s
  - load: stop
  - revive: lb4-2
  - wait: {converged: true, timeout: 2m}
assert:
  - {broken: 0, scheduler: mh}
`

// TestE2ERecipes runs the shell steps of the CI recipes in testdata/ci,
// as the hosted services would, in a directory laid out like a user's
// repository (scenarios/ and topologies/), so that the recipes cannot rot.
// What the services provide is not run: GitHub's actions (checkout,
// setup-go, upload-artifact) and GitLab's image; instead the artifacts
// they would publish are checked (the JUnit report, passing, and the
// timelines). Two things are rewritten: `go install ...@latest` builds
// this checkout (the module may not be published at this commit), and
// sudo, since the tests run as root, runs its command as it is.
func TestE2ERecipes(t *testing.T) {
	requireE2E(t)
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file  string
		steps func(t *testing.T, data []byte) ([]string, map[string]string)
	}{
		{"github-actions.yml", githubSteps},
		{"gitlab-ci.yml", gitlabSteps},
	} {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(repo, "testdata", "ci", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			steps, env := tc.steps(t, data)
			ws := userRepo(t, repo)
			bin := filepath.Join(ws, ".bin")
			shim := filepath.Join(ws, ".shim")
			for _, d := range []string{bin, shim} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			// sudo VAR=value cmd...: env does the same for root.
			if err := os.WriteFile(filepath.Join(shim, "sudo"), []byte("#!/bin/sh\nexec env \"$@\"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			environ := append(os.Environ(), "GOBIN="+bin, "PATH="+shim+":"+bin+":"+os.Getenv("PATH"))
			for k, v := range env {
				environ = append(environ, k+"="+v)
			}
			for _, step := range steps {
				step = strings.ReplaceAll(step, "go install github.com/lab-lb/lab/cmd/lab@latest",
					fmt.Sprintf("(cd %q && go install ./cmd/lab)", repo))
				cmd := exec.Command("bash", "-e", "-o", "pipefail", "-c", step)
				cmd.Dir, cmd.Env = ws, environ
				out, err := cmd.CombinedOutput()
				t.Logf("$ %s\n%s", strings.TrimSpace(step), tail(string(out), 30))
				if err != nil {
					t.Fatalf("step failed: %v", err)
				}
			}
			checkArtifacts(t, ws)
		})
	}
}

// userRepo lays out a user's repository: a scenario and its topology.
func userRepo(t *testing.T, repo string) string {
	t.Helper()
	ws := t.TempDir()
	for _, d := range []string{"scenarios", "topologies"} {
		if err := os.Mkdir(filepath.Join(ws, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	topo, err := os.ReadFile(filepath.Join(repo, "topologies", "minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"topologies/minimal.yaml":     topo,
		"scenarios/recipe-smoke.yaml": []byte(recipeScenario),
	} {
		if err := os.WriteFile(filepath.Join(ws, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return ws
}

// githubSteps returns the run: steps of the workflow's one job.
func githubSteps(t *testing.T, data []byte) ([]string, map[string]string) {
	var wf struct {
		Jobs map[string]struct {
			Steps []struct {
				Uses string `yaml:"uses"`
				Run  string `yaml:"run"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	if err := yaml.Unmarshal(data, &wf); err != nil || len(wf.Jobs) != 1 {
		t.Fatalf("workflow: %v, %d jobs (want 1)", err, len(wf.Jobs))
	}
	var steps []string
	for _, j := range wf.Jobs {
		for _, s := range j.Steps {
			if s.Run != "" {
				steps = append(steps, s.Run)
			}
		}
	}
	return steps, nil
}

// gitlabSteps returns the before_script and script lines of the one job,
// and its variables.
func gitlabSteps(t *testing.T, data []byte) ([]string, map[string]string) {
	var jobs map[string]struct {
		Variables    map[string]string `yaml:"variables"`
		BeforeScript []string          `yaml:"before_script"`
		Script       []string          `yaml:"script"`
	}
	if err := yaml.Unmarshal(data, &jobs); err != nil || len(jobs) != 1 {
		t.Fatalf("gitlab-ci: %v, %d jobs (want 1)", err, len(jobs))
	}
	for _, j := range jobs {
		return append(append([]string{}, j.BeforeScript...), j.Script...), j.Variables
	}
	return nil, nil
}

// checkArtifacts checks what the recipes publish: a JUnit report whose
// suites all passed, and the scenario's timeline as PNG and SVG.
func checkArtifacts(t *testing.T, ws string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(ws, "report.xml"))
	if err != nil {
		t.Fatalf("no JUnit report: %v", err)
	}
	var rep struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Name string `xml:"name,attr"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(data, &rep); err != nil {
		t.Fatalf("JUnit report: %v", err)
	}
	if len(rep.Suites) != 1 || rep.Suites[0].Name != "recipe-smoke" || rep.Tests == 0 || rep.Failures != 0 {
		t.Errorf("JUnit report: %+v, want one passing suite recipe-smoke", rep)
	}
	for _, f := range []string{"recipe-smoke.png", "recipe-smoke.svg"} {
		if st, err := os.Stat(filepath.Join(ws, "timelines", f)); err != nil || st.Size() < 1000 {
			t.Errorf("timeline %s: %v", f, err)
		}
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("(%d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
