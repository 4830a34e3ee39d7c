package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/portier/portier/internal/redistest"
)

// requireTool returns the path of a command-line tool, skipping loudly when
// it is missing, or failing when PORTIER_REQUIRE_<ENV>=1 (CI installs it).
func requireTool(t *testing.T, name, env, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("%s not found (Debian package %s; .ci/run installs it)", name, pkg)
	if os.Getenv("PORTIER_REQUIRE_"+env) == "1" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPING: " + msg)
	return ""
}

// TestAlertRules validates deploy/prometheus-alerts.yaml with promtool and
// runs its unit tests (prometheus-alerts.test.yaml: each alert fires on the
// series it is about, with the annotations shown).
func TestAlertRules(t *testing.T) {
	promtool := requireTool(t, "promtool", "PROMTOOL", "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "prometheus-alerts.yaml"},
		{"test", "rules", "prometheus-alerts.test.yaml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "../deploy"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// metricRef finds metric names in PromQL: portier's own plus the Go and
// process collectors' (every name a dashboard of ours may use).
var metricRef = regexp.MustCompile(`\b(?:portier|process|go)_[a-zA-Z0-9_]+`)

// deployMetricNames returns every metric name the Grafana dashboard and the
// alert rules use, with where it is used.
func deployMetricNames(t *testing.T) map[string]string {
	t.Helper()
	used := map[string]string{}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct {
				Name  string
				Query any
			}
		}
	}
	b, err := os.ReadFile("../deploy/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	exprs := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs++
			for _, m := range metricRef.FindAllString(tg.Expr, -1) {
				used[m] = "dashboard panel " + p.Title
			}
		}
	}
	for _, v := range dash.Templating.List {
		if q, ok := v.Query.(string); ok {
			for _, m := range metricRef.FindAllString(q, -1) {
				used[m] = "dashboard variable " + v.Name
			}
		}
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert, Expr string
			}
		}
	}
	b, err = os.ReadFile("../deploy/prometheus-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("prometheus-alerts.yaml: %v", err)
	}
	alerts := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts++
			for _, m := range metricRef.FindAllString(r.Expr, -1) {
				used[m] = "alert " + r.Alert
			}
		}
	}
	// The files must have been read as intended, or the check below would
	// pass on nothing.
	if exprs < 20 || alerts < 7 {
		t.Fatalf("read %d dashboard queries and %d alerts; the files' layout changed", exprs, alerts)
	}
	return used
}

// exportedNames returns the metric names in a Prometheus text exposition.
func exportedNames(text string) map[string]bool {
	names := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// TestDeployMetricsExported: every metric name that
// deploy/grafana-dashboard.json and deploy/prometheus-alerts.yaml use is
// exported by a running portier with every optional source configured
// (Redis, access log, health checks, per-route metrics).
func TestDeployMetricsExported(t *testing.T) {
	used := deployMetricNames(t)
	r := redistest.Start(t)
	be := startOpsBackend(t, "be", nil)
	yml := fmt.Sprintf(`listeners:
  - {name: web, address: "127.0.0.1:0", protocol: http}
routes:
  static.test: {metrics: true, backends: [http://%s]}
route_metrics: {top: 5}
loops: 1
admin: 127.0.0.1:0
access_log: {path: %s}
health: {check: tcp, interval: 1s}
redis:
  url: %s
`, be.addr, filepath.Join(t.TempDir(), "access.log"), r.URL())
	p := startRedisPortier(t, yml)
	admin := opsAdminAddr(t, p)
	// One request so that every per-connection series has a sample.
	opsWant200(t, p.addr("web"), "static.test", "be")
	exported := exportedNames(opsScrape(t, admin))
	var missing []string
	for name, where := range used {
		if !exported[name] {
			missing = append(missing, fmt.Sprintf("%s (%s)", name, where))
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Fatalf("%d of %d metric names used by deploy/ are not exported by portier:\n  %s",
			len(missing), len(used), strings.Join(missing, "\n  "))
	}
	t.Logf("all %d metric names used by deploy/ are exported", len(used))
}
