package api_test

import (
	"encoding/json"
	"testing"
)

// TestMalformedContentPartsAre400 sends chat completions whose content parts
// are malformed, streamed and not: each is a 400 in the OpenAI error shape
// naming the part, with no upstream call and no entry; well-formed parts of
// other types still go through the cache.
func TestMalformedContentPartsAre400(t *testing.T) {
	forEachBackend(t, testMalformedContentPartsAre400)
}

func testMalformedContentPartsAre400(t *testing.T) {
	up := newUpstream(t, nil)
	p := newProxy(t, up, nil)
	body := func(stream, content string) string {
		return `{"model":"m","stream":` + stream + `,"messages":[{"role":"user","content":` + content + `}]}`
	}
	cases := []struct {
		name, content, param string
	}{
		{"text missing", `[{"type":"text"}]`, "messages[0].content[0].text"},
		{"text a number", `[{"type":"text","text":5}]`, "messages[0].content[0].text"},
		{"part not an object", `[{"type":"text","text":"a"},"b"]`, "messages[0].content[1]"},
		{"type missing", `[{"text":"a"}]`, "messages[0].content[0].type"},
	}
	for _, tc := range cases {
		for _, stream := range []string{"false", "true"} {
			t.Run(tc.name+"/stream "+stream, func(t *testing.T) {
				r := p.post(t, "sk-a", body(stream, tc.content))
				var e struct {
					Error struct {
						Type  string  `json:"type"`
						Param *string `json:"param"`
						Code  *string `json:"code"`
					} `json:"error"`
				}
				if err := json.Unmarshal(r.body, &e); err != nil || r.status != 400 || e.Error.Type != "invalid_request_error" ||
					e.Error.Param == nil || *e.Error.Param != tc.param || e.Error.Code == nil {
					t.Errorf("%d %s, want 400 invalid_request_error with param %q", r.status, r.body, tc.param)
				}
			})
		}
	}
	if n := up.calls.Load(); n != 0 {
		t.Errorf("upstream calls = %d, want 0", n)
	}
	if n, _ := p.cache.Len(t.Context()); n != 0 {
		t.Errorf("entries = %d, want 0", n)
	}
	// A well-formed image part is cached (exact tier).
	img := body("false", `[{"type":"text","text":"What is this?"},{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]`)
	if r := p.post(t, "sk-a", img); r.status != 200 || r.semStatus() != "MISS" {
		t.Errorf("image part: %d %s, want 200 MISS: %s", r.status, r.semStatus(), r.body)
	}
	if r := p.post(t, "sk-a", img); r.semStatus() != "HIT" {
		t.Errorf("image part again: %s, want HIT", r.semStatus())
	}
}
