package api_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/semcache/semcache/api"
)

// TestGrafanaDashboardNamesExportedMetrics: every metric the Grafana
// dashboard (docs/grafana/semcache-dashboard.json) queries is one the
// proxy exports, so a renamed metric cannot leave a panel silently empty.
func TestGrafanaDashboardNamesExportedMetrics(t *testing.T) {
	b, err := os.ReadFile("../docs/grafana/semcache-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	p := newProxy(t, newUpstream(t, nil), func(c *api.Config) { c.UI = api.UILoopback })
	p.ask(t, "sk-g", "How do I reset my password?", nil) // so that every histogram has series
	p.ask(t, "sk-g", "How do I reset my password", nil)
	exported := string(p.getUI(t, "/metrics", nil).body)
	name := regexp.MustCompile(`\bsemcache_[a-z_]+`)
	var seen []string
	for _, pn := range d.Panels {
		if len(pn.Targets) == 0 {
			t.Errorf("panel %q has no query", pn.Title)
		}
		for _, tg := range pn.Targets {
			for _, m := range name.FindAllString(tg.Expr, -1) {
				if !strings.Contains(exported, "\n"+m+"{") && !strings.Contains(exported, "\n"+m+" ") {
					t.Errorf("panel %q queries %s, which /metrics does not export", pn.Title, m)
				}
				if !slices.Contains(seen, m) {
					seen = append(seen, m)
				}
			}
		}
	}
	if len(seen) < 10 {
		t.Errorf("the dashboard queries only %v", seen)
	}
}
