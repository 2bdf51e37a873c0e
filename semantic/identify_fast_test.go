package semantic

import (
	"regexp"
	"strings"
	"testing"
)

// fastCorpus holds chat bodies of many shapes. fast says whether
// identifyChatFast must take the body (the common shapes; a test that
// found the fast path never taken would prove nothing); the others it
// must leave to the general path, or agree with it.
var fastCorpus = []struct {
	name, body string
	fast       bool
}{
	{"minimal", `{"model":"m","messages":[{"role":"user","content":"Hi"}]}`, true},
	{"spaces everywhere", " \n{ \"messages\" : [ { \"content\" : \"Hi  there \" , \"role\" : \"user\" } ] ,\t\"model\" : \"m\" }\r\n", true},
	{"history and params", `{"model":"gpt-4o","temperature":0.70,"top_p":1.0,"max_tokens":5e2,"seed":-0,"n":1,"stop":["\n\n###"],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","properties":{"b":{"type":"string"},"a":{"type":"integer","minimum":1E2}}}}},"user":"u-1","stream":false,"store":true,"metadata":{"k":"v"},"stream_options":null,"messages":[{"role":"system","content":"You are <b>helpful</b> & brief."},{"role":"user","content":"Hi, how\u0020do I reset my password?"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"lookup","arguments":"{\"q\":1}"}}]},{"role":"tool","tool_call_id":"c1","content":"{\"ok\":true}"},{"role":"user","content":"Customer question: How do I change my e-mail?\n\nContext: https://example.com/Help?A=1 and user_id ABC123def"}]}`, true},
	{"stream true", `{"model":"m","stream":true,"messages":[{"role":"user","content":"Hi"}]}`, true},
	{"escapes and unicode", `{"model":"m","messages":[{"role":"user","name":"Ana\u00e9","content":"caf\u00e9 cafe\u0301 \u2028 \u2029 \"q\" \\ \/ \b\f\n\r\t \ud83d\ude00 <x> & é ` + "\u2028" + `"}]}`, true},
	{"escaped keys", `{"mod\u0065l":"m","me\u0073sages":[{"r\u006fle":"user","content":"Hi"}],"\u00e9":1,"z":2,"Z":3,"a\u0000b":4}`, true},
	{"numbers", `{"model":"m","temperature":1e-7,"top_p":123456789012345678901234567890,"presence_penalty":-1.5E+3,"frequency_penalty":0.1e1,"logit_bias":{"50256":-100,"1":1e2},"x":[1,2.50,-3e0,1e300],"messages":[{"role":"user","content":"Hi"}]}`, true},
	{"unknown params kept", `{"model":"m","foo":{"b":[{"y":1,"x":null}],"a":true},"bar":false,"messages":[{"role":"user","content":"Hi"}]}`, true},
	{"assistant last", `{"model":"m","messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Sure, "}]}`, true},
	{"code and urls", "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"Why does `Foo.Bar()` fail on HTTPS://Example.COM/X?\\n```go\\nfmt.Println(\\\"Hi\\\")\\n```\"}]}", true},
	{"empty nested", `{"model":"m","tools":[],"response_format":{},"messages":[{"role":"user","content":""}]}`, true},

	// Left to the general path (or required to agree with it).
	{"content parts", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"Hi"}]}]}`, false},
	{"image part", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/a.png"}}]}]}`, false},
	{"parts in history", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"}]},{"role":"user","content":"Hi"}]}`, false},
	{"null last content", `{"model":"m","messages":[{"role":"user","content":null}]}`, false},
	{"no last content", `{"model":"m","messages":[{"role":"user"}]}`, false},
	{"duplicate top key", `{"model":"m","model":"n","messages":[{"role":"user","content":"Hi"}]}`, false},
	{"duplicate nested key", `{"model":"m","foo":{"a":1,"a":2},"messages":[{"role":"user","content":"Hi"}]}`, false},
	{"duplicate message key", `{"model":"m","messages":[{"role":"user","content":"Hi","content":"Ho"}]}`, false},
	{"duplicate messages", `{"model":"m","messages":[{"role":"user","content":"Hi"}],"messages":[{"role":"user","content":"Ho"}]}`, false},
	{"no model", `{"messages":[{"role":"user","content":"Hi"}]}`, false},
	{"null model", `{"model":null,"messages":[{"role":"user","content":"Hi"}]}`, false},
	{"bad temperature", `{"model":"m","temperature":"hot","messages":[{"role":"user","content":"Hi"}]}`, false},
	{"fractional n", `{"model":"m","n":1.5,"messages":[{"role":"user","content":"Hi"}]}`, false},
	{"huge seed", `{"model":"m","seed":1e400,"messages":[{"role":"user","content":"Hi"}]}`, false},
	{"bad stream", `{"model":"m","stream":"yes","messages":[{"role":"user","content":"Hi"}]}`, false},
	{"empty role", `{"model":"m","messages":[{"role":"","content":"Hi"}]}`, false},
	{"number role", `{"model":"m","messages":[{"role":1,"content":"Hi"}]}`, false},
	{"message not object", `{"model":"m","messages":["Hi"]}`, false},
	{"empty messages", `{"model":"m","messages":[]}`, false},
	{"messages not array", `{"model":"m","messages":{"role":"user"}}`, false},
	{"trailing data", `{"model":"m","messages":[{"role":"user","content":"Hi"}]} {}`, false},
	{"trailing comma", `{"model":"m","messages":[{"role":"user","content":"Hi"},]}`, false},
	{"missing colon", `{"model" "m","messages":[{"role":"user","content":"Hi"}]}`, false},
	{"lone surrogate", `{"model":"m","messages":[{"role":"user","content":"\ud800"}]}`, false},
	{"invalid utf-8", "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}", false},
	{"raw control character", "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\x01b\"}]}", false},
	{"not an object", `[{"model":"m"}]`, false},
	{"empty", ``, false},
	{"deep", `{"model":"m","x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `,"messages":[{"role":"user","content":"Hi"}]}`, false},
}

// fastNormalizations are the settings the two paths are compared under.
var fastNormalizations = []Normalization{
	{},
	{SkipNFC: true, KeepCase: true, KeepSpace: true},
	{WholeMessage: true},
	{Question: regexp.MustCompile(`(?s)Customer question:\s*(?P<question>[^\n]+)`)},
}

var fastCallers = []Caller{
	{},
	{Tenant: "t-1", Namespace: "ns"},
	{Tenant: "t-2", Extra: map[string]string{"openai-beta": "assistants=v2", "api-version": "2024-06-01"}},
}

// TestIdentifyFastMatchesGeneral checks that the one-pass path gives the
// identity the general path gives for every body it takes, under every
// normalisation and caller, and that it takes the common shapes.
func TestIdentifyFastMatchesGeneral(t *testing.T) {
	for _, c := range fastCorpus {
		for ni, n := range fastNormalizations {
			for wi, who := range fastCallers {
				id, rq, ok := identifyChatFast([]byte(c.body), who, n)
				if ok != c.fast {
					t.Errorf("%s (normalisation %d, caller %d): fast path ok = %v, want %v", c.name, ni, wi, ok, c.fast)
				}
				if !ok {
					continue
				}
				gid, grq, err := identifyChatGeneral([]byte(c.body), who, n)
				if err != nil {
					t.Errorf("%s: fast path took a body the general path refuses: %v", c.name, err)
					continue
				}
				if id != gid || rq != grq {
					t.Errorf("%s (normalisation %d, caller %d):\nfast    %+v %+v\ngeneral %+v %+v", c.name, ni, wi, id, rq, gid, grq)
				}
			}
		}
	}
}

// TestIdentifyChatErrorsUnchanged checks that bodies the fast path leaves
// alone still get the general path's answer through IdentifyChat.
func TestIdentifyChatErrorsUnchanged(t *testing.T) {
	for _, c := range fastCorpus {
		id, rq, err := IdentifyChat([]byte(c.body), Caller{Tenant: "t"}, Normalization{})
		gid, grq, gerr := identifyChatGeneral([]byte(c.body), Caller{Tenant: "t"}, Normalization{})
		if id != gid || rq != grq || (err == nil) != (gerr == nil) || (err != nil && err.Error() != gerr.Error()) {
			t.Errorf("%s: IdentifyChat = %+v %+v %v, general path %+v %+v %v", c.name, id, rq, err, gid, grq, gerr)
		}
	}
}

// FuzzIdentifyFast checks the same agreement on arbitrary bodies.
func FuzzIdentifyFast(f *testing.F) {
	for i, c := range fastCorpus {
		f.Add([]byte(c.body), uint8(i))
	}
	f.Fuzz(func(t *testing.T, body []byte, flags uint8) {
		n := fastNormalizations[int(flags)%len(fastNormalizations)]
		who := fastCallers[int(flags/4)%len(fastCallers)]
		id, rq, ok := identifyChatFast(body, who, n)
		if !ok {
			return
		}
		gid, grq, err := identifyChatGeneral(body, who, n)
		if err != nil {
			t.Fatalf("fast path took %q, which the general path refuses: %v", body, err)
		}
		if id != gid || rq != grq {
			t.Fatalf("%q:\nfast    %+v %+v\ngeneral %+v %+v", body, id, rq, gid, grq)
		}
	})
}

// reTokenRun is what nextTokenRun scans for, as the regexp literalSpans
// used before.
var reTokenRun = regexp.MustCompile(`[A-Za-z0-9_+/=-]+`)

func checkTokenRuns(t *testing.T, s string) {
	t.Helper()
	var got [][]int
	for i, j := nextTokenRun(s, 0); i >= 0; i, j = nextTokenRun(s, j) {
		got = append(got, []int{i, j})
	}
	want := reTokenRun.FindAllStringIndex(s, -1)
	if len(got) != len(want) {
		t.Fatalf("%q: runs %v, regexp %v", s, got, want)
	}
	for k := range got {
		if got[k][0] != want[k][0] || got[k][1] != want[k][1] {
			t.Fatalf("%q: runs %v, regexp %v", s, got, want)
		}
	}
}

func TestNextTokenRunMatchesRegexp(t *testing.T) {
	for _, s := range []string{"", " ", "a", "user_id=42 and x-y/z+w==", "é", "aé-b", "--", "ABC123def, INC-0012345.", "\x00a\xffb"} {
		checkTokenRuns(t, s)
	}
}

func FuzzNextTokenRun(f *testing.F) {
	f.Add("user_id=42 and x-y/z+w==")
	f.Fuzz(checkTokenRuns)
}
