package lab

import (
	"encoding/json"
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/cpustat"
	"github.com/lab-lb/lab/internal/fabric"
	"github.com/lab-lb/lab/internal/kmod"
	"github.com/lab-lb/lab/internal/node"
	"github.com/lab-lb/lab/internal/scenario"
	"github.com/lab-lb/lab/internal/topology"
	"github.com/lab-lb/lab/internal/traffic"
)

// TestPublicTypesCarryEveryField holds each public type to the internal
// one it stands for: every exported field of the internal type has a
// field of the same name and JSON tag, or is listed as dropped, with the
// reason. A field added to an internal type fails here until the public
// type and its converter carry it, or the list says why not.
func TestPublicTypesCarryEveryField(t *testing.T) {
	for _, tc := range []struct {
		internal, public any
		dropped          map[string]string
		// noJSON: the public type's JSON is not the CLI's (it has none,
		// or writes the internal value's).
		noJSON bool
	}{
		{control.Status{}, Status{}, nil, false},
		{control.NodeStatus{}, NodeStatus{}, nil, false},
		{control.InterfaceStatus{}, InterfaceStatus{}, nil, false},
		{control.AgentStatus{}, AgentStatus{}, nil, false},
		{control.VIPStatus{}, VIPStatus{}, nil, false},
		{control.Event{}, Event{}, nil, false},
		{control.Route{}, Route{}, nil, false},
		{cpustat.Report{}, CPUReport{}, nil, false},
		{cpustat.Kind{}, CPUKind{}, nil, false},
		{node.HTTPResult{}, HTTPResult{}, nil, false},
		{node.BenchResult{}, BenchResult{}, nil, false},
		{fabric.Impairment{}, Impairment{}, nil, false},
		{traffic.Report{}, Report{}, nil, false},
		{traffic.Conn{}, Conn{}, nil, false},
		{traffic.HistogramBucket{}, StallBucket{}, nil, false},
		{traffic.Bucket{}, SeriesBucket{}, nil, false},
		{traffic.Progress{}, LoadProgress{}, nil, false},
		{traffic.Second{}, LoadSecond{}, nil, false},
		{traffic.RequestReport{}, RequestReport{}, nil, false},
		{traffic.RequestSecond{}, RequestSecond{}, nil, false},
		{traffic.LatencyStats{}, LatencyStats{}, nil, false},
		{traffic.Repairs{}, Repairs{}, nil, false},
		{traffic.RepairWindow{}, RepairWindow{}, nil, false},
		{traffic.Injection{}, Injection{}, nil, false},
		{control.LinkStatus{}, LinkStatus{}, nil, false},
		{traffic.Config{}, LoadConfig{}, map[string]string{
			"Targets":  "LoadConfig.VIPs names them; StartLoad resolves them (Load.Targets)",
			"Resolver": "the node's agent asks the lab's name servers",
			"Within":   "the node's agent dials in its namespace",
		}, false},
		{scenario.Load{}, LoadConfig{}, nil, true},
		{topology.Topology{}, Topology{}, map[string]string{
			"BGP":     "the lab's own BGP setup (ASN, route reflectors)",
			"DNS":     "Topology.Zone is what a test needs of it",
			"VIPPool": "VIP.Allocated and the VIPs' addresses tell what came of it",
		}, false},
		{topology.VIP{}, VIP{}, nil, false},
		{topology.Segment{}, Segment{}, nil, false},
		{topology.Link{}, Link{}, nil, false},
		{topology.Node{}, Node{}, map[string]string{"Settings": "sysctls, BGP and BFD timers, health checks: the lab's own tuning"}, false},
		{topology.Interface{}, Interface{}, nil, false},
		{topology.Route{}, StaticRoute{}, nil, false},
		{fabric.Plan{}, UpPlan{}, map[string]string{
			"Bridges": "kernel objects: String and the JSON show them",
			"Veths":   "kernel objects: String and the JSON show them",
			"Tunnels": "kernel objects: String and the JSON show them",
			"Addrs":   "kernel objects: String and the JSON show them",
			"Routes":  "kernel objects: String and the JSON show them",
			"Sysctls": "kernel objects: String and the JSON show them",
		}, false},
		{scenario.Scenario{}, Scenario{}, map[string]string{"Assert": "Scenario.Assertions, as text"}, true},
		{scenario.Step{}, ScenarioStep{}, map[string]string{
			"Sleep": "the step as text is its Label", "Action": "the step as text is its Label", "Wait": "the step as text is its Label",
		}, true},
		{scenario.Result{}, ScenarioResult{}, nil, true},
		{scenario.StepResult{}, ScenarioStepResult{}, map[string]string{"Step": "its Kind, Label and Line"}, true},
		{scenario.Failover{}, Failover{}, nil, true},
		{scenario.VIPFailover{}, VIPFailover{}, nil, true},
		{scenario.AssertionResult{}, AssertionResult{}, nil, true},
		{scenario.VIP{}, ScenarioVIP{}, nil, true},
		{scenario.Totals{}, VIPTotals{}, nil, true},
	} {
		in, pub := reflect.TypeOf(tc.internal), reflect.TypeOf(tc.public)
		t.Run(in.String(), func(t *testing.T) {
			for f := range exportedFields(in) {
				if _, ok := tc.dropped[f.Name]; ok {
					continue
				}
				pf, ok := pub.FieldByName(f.Name)
				switch {
				case !ok:
					t.Errorf("%s.%s is not carried by %s (add it, or list it as dropped with the reason)", in, f.Name, pub)
				case !tc.noJSON && pf.Tag.Get("json") != f.Tag.Get("json"):
					t.Errorf("%s.%s has JSON tag %q, %s.%s %q: the CLI's JSON would change", in, f.Name, f.Tag.Get("json"), pub, f.Name, pf.Tag.Get("json"))
				}
			}
			for name := range tc.dropped {
				if _, ok := in.FieldByName(name); !ok {
					t.Errorf("%s has no field %s: take it off the dropped list", in, name)
				}
			}
		})
	}
}

// exportedFields yields the exported fields of struct type t.
func exportedFields(t reflect.Type) func(yield func(reflect.StructField) bool) {
	return func(yield func(reflect.StructField) bool) {
		for i := range t.NumField() {
			if f := t.Field(i); f.IsExported() && !yield(f) {
				return
			}
		}
	}
}

// TestConvertersKeepTheJSON converts internal values whose every field is
// set (and values with empty and nil lists) and checks that the public
// value marshals to the same JSON: what `lab status -o json`, `lab events
// -o json`, `lab cpu -o json` and `lab load -o json` print.
func TestConvertersKeepTheJSON(t *testing.T) {
	var (
		st     control.Status
		evs    []control.Event
		cpu    cpustat.Report
		rep    traffic.Report
		httpR  node.HTTPResult
		benchR node.BenchResult
	)
	for _, v := range []any{&st, &evs, &cpu, &rep, &httpR, &benchR} {
		fill(reflect.ValueOf(v).Elem())
	}
	for _, tc := range []struct {
		name             string
		internal, public any
	}{
		{"status", &st, statusFrom(&st)},
		{"status with empty lists", &control.Status{Nodes: []control.NodeStatus{{Interfaces: []control.InterfaceStatus{}}}, VIPs: []control.VIPStatus{}},
			statusFrom(&control.Status{Nodes: []control.NodeStatus{{Interfaces: []control.InterfaceStatus{}}}, VIPs: []control.VIPStatus{}})},
		{"status nil", (*control.Status)(nil), statusFrom(nil)},
		{"events", evs, eventsFrom(evs)},
		{"events empty", []control.Event{}, eventsFrom([]control.Event{})},
		{"events none", []control.Event(nil), eventsFrom(nil)},
		{"cpu", &cpu, cpuReportFrom(&cpu)},
		{"cpu without kinds", &cpustat.Report{Kinds: []cpustat.Kind{}}, cpuReportFrom(&cpustat.Report{Kinds: []cpustat.Kind{}})},
		{"report", &rep, reportFrom(&rep)},
		{"report empty", &traffic.Report{ByOutcome: map[traffic.Outcome]int{}, Conns: []traffic.Conn{}},
			reportFrom(&traffic.Report{ByOutcome: map[traffic.Outcome]int{}, Conns: []traffic.Conn{}})},
		{"http", &httpR, (*HTTPResult)(&httpR)},
		{"bench", &benchR, (*BenchResult)(&benchR)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := json.MarshalIndent(tc.internal, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.MarshalIndent(tc.public, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(got), string(want)); diff != "" {
				t.Errorf("JSON of the public form (-got +want):\n%s", diff)
			}
		})
	}
}

// TestReportWayBack checks that a report converted to its public form
// and back is the load engine's report again, which the public report's
// writers rely on.
func TestReportWayBack(t *testing.T) {
	var rep traffic.Report
	fill(reflect.ValueOf(&rep).Elem())
	back, err := reportFrom(&rep).traffic()
	if err != nil {
		t.Fatal(err)
	}
	opts := cmp.Options{cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) }), cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})}
	if diff := cmp.Diff(back, &rep, opts); diff != "" {
		t.Errorf("report after the way back (-got +want):\n%s", diff)
	}
}

// TestConvertersCarryEveryValue fills the internal values of the
// converters without JSON and compares field by field.
func TestConvertersCarryEveryValue(t *testing.T) {
	var (
		top topology.Topology
		p   traffic.Progress
		res scenario.Result
	)
	for _, v := range []any{&top, &p, &res} {
		fill(reflect.ValueOf(v).Elem())
	}
	pub := topologyFrom(&top)
	if pub.Zone != top.DNS.Zone || pub.Nodes[0].Role != Role(top.Nodes[0].Role) || pub.Nodes[0].Routes[0] != StaticRoute(top.Nodes[0].Routes[0]) {
		t.Errorf("topologyFrom() = %+v, from %+v", pub, top)
	}
	sameFields(t, "topology", top, *pub)
	sameFields(t, "progress", p, *progressFrom(p))
	pr := scenarioResultFrom(&res)
	sameFields(t, "scenario result", res, *pr)
	if st := pr.Steps[0]; st.Kind != string(res.Steps[0].Step.Kind) || st.Label != res.Steps[0].Step.Label || st.Line != res.Steps[0].Step.Line {
		t.Errorf("step %+v, from %+v", st, res.Steps[0])
	}
	if a := pr.Assertions[0]; a.Assertion != res.Assertions[0].Assertion.String() || a.Message != res.Assertions[0].Message() {
		t.Errorf("assertion %+v, from %+v", a, res.Assertions[0])
	}
}

// sameFields compares the fields of the same name and kind of an
// internal value and its public form, recursively, through JSON-less
// values: what one has and the other lacks is the concern of
// TestPublicTypesCarryEveryField.
func sameFields(t *testing.T, what string, internal, public any) {
	t.Helper()
	var walk func(path string, a, b reflect.Value)
	walk = func(path string, a, b reflect.Value) {
		switch {
		case a.Kind() == reflect.Pointer && b.Kind() == reflect.Pointer:
			if a.IsNil() != b.IsNil() {
				t.Errorf("%s %s: nil %v, public nil %v", what, path, a.IsNil(), b.IsNil())
			} else if !a.IsNil() {
				walk(path, a.Elem(), b.Elem())
			}
		case a.Kind() == reflect.Struct && b.Kind() == reflect.Struct && a.Type().PkgPath() != "time" && !strings.HasPrefix(a.Type().PkgPath(), "net/"):
			for f := range exportedFields(a.Type()) {
				if _, ok := b.Type().FieldByName(f.Name); ok {
					walk(path+"."+f.Name, a.FieldByName(f.Name), b.FieldByName(f.Name))
				}
			}
		case a.Kind() == reflect.Slice && b.Kind() == reflect.Slice:
			if a.Len() != b.Len() || a.IsNil() != b.IsNil() {
				t.Errorf("%s %s: %d elements (nil %v), public %d (nil %v)", what, path, a.Len(), a.IsNil(), b.Len(), b.IsNil())
				return
			}
			for i := range a.Len() {
				walk(path+"[]", a.Index(i), b.Index(i))
			}
		case a.Kind() == b.Kind() && a.Type().ConvertibleTo(b.Type()):
			if !reflect.DeepEqual(a.Convert(b.Type()).Interface(), b.Interface()) {
				t.Errorf("%s %s: %v, public %v", what, path, a.Interface(), b.Interface())
			}
		}
	}
	walk("", reflect.ValueOf(internal), reflect.ValueOf(public))
}

// fill sets every exported field of v, recursively, to a value that is
// not the zero one: one element in slices and maps.
func fill(v reflect.Value) {
	switch x := v.Addr().Interface().(type) {
	case *time.Time:
		*x = time.Date(2026, 12, 1, 10, 0, 0, 123e6, time.UTC)
		return
	case *netip.Addr:
		*x = netip.MustParseAddr("192.0.2.7")
		return
	case *netip.AddrPort:
		*x = netip.MustParseAddrPort("198.51.100.1:80")
		return
	case *netip.Prefix:
		*x = netip.MustParsePrefix("192.0.2.0/24")
		return
	case *json.RawMessage:
		*x = json.RawMessage(`{"routes":{}}`)
		return
	case *error:
		*x = errors.New("step failed")
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("s-" + v.Type().Name())
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(7)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(7)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(0.25)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0))
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k)
		fill(e)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i))
			}
		}
	}
}

// TestConstantsMatchInternal holds the public constants, written out for
// the reader of the documentation, to the internal ones.
func TestConstantsMatchInternal(t *testing.T) {
	for _, tc := range []struct{ public, internal any }{
		{ModeNative, Mode(control.ModeNative)},
		{ModeVM, Mode(control.ModeVM)},
		{RoleClient, Role(topology.RoleClient)},
		{RoleHost, Role(topology.RoleHost)},
		{RoleRouter, Role(topology.RoleRouter)},
		{RoleRR, Role(topology.RoleRR)},
		{RoleLB4, Role(topology.RoleLB4)},
		{RoleLB7, Role(topology.RoleLB7)},
		{RoleServer, Role(topology.RoleServer)},
		{RoleDNS, Role(topology.RoleDNS)},
		{IPv4, Family(topology.IPv4)},
		{IPv6, Family(topology.IPv6)},
		{EventRoute, control.EventRoute},
		{EventInject, control.EventInject},
		{EventBFD, control.EventBFD},
		{SeriesStep, traffic.SeriesStep},
		{ModuleBuiltIn, ModuleState(kmod.BuiltIn)},
		{ModuleLoaded, ModuleState(kmod.Loaded)},
		{ModuleLoadable, ModuleState(kmod.Loadable)},
		{ModuleMissing, ModuleState(kmod.Missing)},
	} {
		if tc.public != tc.internal {
			t.Errorf("public constant %v, internal %v", tc.public, tc.internal)
		}
	}
	var outcomes []Outcome
	for _, o := range traffic.Outcomes() {
		outcomes = append(outcomes, Outcome(o))
	}
	if want := []Outcome{OutcomeOK, OutcomeReset, OutcomeRefused, OutcomeTimeout, OutcomeBadStatus, OutcomeExhausted, OutcomeError, OutcomeDNS}; !slices.Equal(outcomes, want) {
		t.Errorf("outcomes %v, public %v", outcomes, want)
	}
}
