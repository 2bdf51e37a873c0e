package sim_test

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/semcache/semcache/api/sim"
)

func post(t *testing.T, url, body string) *http.Response {
	t.Helper()
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestChatCompletion(t *testing.T) {
	s := sim.New(sim.Config{})
	srv := httptest.NewServer(s)
	defer srv.Close()
	resp := post(t, srv.URL, `{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Where is my card?"}]}`)
	var got struct {
		Object  string `json:"object"`
		Model   string `json:"model"`
		Choices []struct {
			Message      struct{ Content string }
			FinishReason string `json:"finish_reason"`
		}
		Usage struct {
			Prompt     int `json:"prompt_tokens"`
			Completion int `json:"completion_tokens"`
			Total      int `json:"total_tokens"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.Object != "chat.completion" || got.Model != "m" || len(got.Choices) != 1 ||
		got.Choices[0].Message.Content != sim.AnswerPrefix+"Where is my card?" || got.Choices[0].FinishReason != "stop" {
		t.Errorf("answer: %+v", got)
	}
	if got.Usage.Prompt <= 0 || got.Usage.Completion != sim.Tokens(sim.AnswerPrefix+"Where is my card?") || got.Usage.Total != got.Usage.Prompt+got.Usage.Completion {
		t.Errorf("usage: %+v", got.Usage)
	}
	if s.Calls() != 1 {
		t.Errorf("Calls() = %d, want 1", s.Calls())
	}
}

func TestStream(t *testing.T) {
	srv := httptest.NewServer(sim.New(sim.Config{}))
	defer srv.Close()
	for _, includeUsage := range []bool{false, true} {
		body := `{"model":"m","stream":true,"messages":[{"role":"user","content":"Hi there"}]}`
		if includeUsage {
			body = `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hi there"}]}`
		}
		resp := post(t, srv.URL, body)
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("Content-Type %q", ct)
		}
		var content strings.Builder
		var finish string
		var usageChunks int
		var done bool
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			if line == "[DONE]" {
				done = true
				continue
			}
			var c struct {
				Object  string `json:"object"`
				Choices []struct {
					Delta        struct{ Content string }
					FinishReason *string `json:"finish_reason"`
				}
				Usage *struct {
					Total int `json:"total_tokens"`
				}
			}
			if err := json.Unmarshal([]byte(line), &c); err != nil || c.Object != "chat.completion.chunk" {
				t.Fatalf("bad chunk %q: %v", line, err)
			}
			for _, ch := range c.Choices {
				content.WriteString(ch.Delta.Content)
				if ch.FinishReason != nil {
					finish = *ch.FinishReason
				}
			}
			if c.Usage != nil && c.Usage.Total > 0 {
				usageChunks++
			}
		}
		if content.String() != sim.AnswerPrefix+"Hi there" || finish != "stop" || !done {
			t.Errorf("include_usage=%v: content %q finish %q done %v", includeUsage, content.String(), finish, done)
		}
		if want := map[bool]int{false: 0, true: 1}[includeUsage]; usageChunks != want {
			t.Errorf("include_usage=%v: %d usage chunks, want %d", includeUsage, usageChunks, want)
		}
	}
}

func TestBadRequest(t *testing.T) {
	srv := httptest.NewServer(sim.New(sim.Config{}))
	defer srv.Close()
	resp := post(t, srv.URL, `{"model":"m"}`)
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.Contains(string(b), `"error"`) {
		t.Errorf("%d %s", resp.StatusCode, b)
	}
}

func TestEmbeddings(t *testing.T) {
	srv := httptest.NewServer(sim.New(sim.Config{}))
	defer srv.Close()
	embed := func(t *testing.T, body string) (status int, got struct {
		Object string `json:"object"`
		Model  string `json:"model"`
		Data   []struct {
			Object    string          `json:"object"`
			Index     int             `json:"index"`
			Embedding json.RawMessage `json:"embedding"`
		} `json:"data"`
		Usage struct {
			Prompt int `json:"prompt_tokens"`
			Total  int `json:"total_tokens"`
		} `json:"usage"`
	}) {
		t.Helper()
		resp, err := http.Post(srv.URL+"/v1/embeddings", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == 200 {
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, got
	}
	floats := func(t *testing.T, raw json.RawMessage) []float32 {
		t.Helper()
		var v []float32
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("embedding %s: %v", raw, err)
		}
		return v
	}

	t.Run("array", func(t *testing.T) {
		status, got := embed(t, `{"model":"e","input":["alpha","beta gamma"]}`)
		if status != 200 || got.Object != "list" || got.Model != "e" || len(got.Data) != 2 {
			t.Fatalf("%d %+v", status, got)
		}
		for i, in := range []string{"alpha", "beta gamma"} {
			d := got.Data[i]
			if d.Object != "embedding" || d.Index != i {
				t.Errorf("data[%d]: %+v", i, d)
			}
			v := floats(t, d.Embedding)
			if want := sim.Embedding("e", in, sim.EmbeddingDim); fmt.Sprint(v) != fmt.Sprint(want) {
				t.Errorf("data[%d]: %v, want Embedding(%q) %v", i, v, in, want)
			}
			var norm float64
			for _, f := range v {
				norm += float64(f) * float64(f)
			}
			if math.Abs(norm-1) > 1e-5 {
				t.Errorf("data[%d]: squared norm %v, want 1", i, norm)
			}
		}
		if want := sim.Tokens("alpha") + sim.Tokens("beta gamma"); got.Usage.Prompt != want || got.Usage.Total != want {
			t.Errorf("usage %+v, want %d prompt and total tokens", got.Usage, want)
		}
	})
	t.Run("deterministic per model and text", func(t *testing.T) {
		a := sim.Embedding("e", "alpha", 8)
		if fmt.Sprint(a) != fmt.Sprint(sim.Embedding("e", "alpha", 8)) {
			t.Error("same arguments, different vectors")
		}
		if fmt.Sprint(a) == fmt.Sprint(sim.Embedding("f", "alpha", 8)) || fmt.Sprint(a) == fmt.Sprint(sim.Embedding("e", "alpha!", 8)) {
			t.Error("other model or text, same vector")
		}
	})
	t.Run("string input and dimensions", func(t *testing.T) {
		status, got := embed(t, `{"model":"e","input":"alpha","dimensions":40}`)
		if status != 200 || len(got.Data) != 1 || len(floats(t, got.Data[0].Embedding)) != 40 {
			t.Fatalf("%d %+v", status, got)
		}
	})
	t.Run("base64", func(t *testing.T) {
		status, got := embed(t, `{"model":"e","input":["alpha"],"encoding_format":"base64"}`)
		if status != 200 || len(got.Data) != 1 {
			t.Fatalf("%d %+v", status, got)
		}
		var s string
		if err := json.Unmarshal(got.Data[0].Embedding, &s); err != nil {
			t.Fatalf("embedding %s: not a string", got.Data[0].Embedding)
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != 4*sim.EmbeddingDim {
			t.Fatalf("base64 %q: %v, %d bytes", s, err, len(b))
		}
		want := sim.Embedding("e", "alpha", sim.EmbeddingDim)
		for i := range want {
			if f := math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])); f != want[i] {
				t.Errorf("float %d: %v, want %v", i, f, want[i])
			}
		}
	})
	for _, body := range []string{`{"model":"e","input":[1,2]}`, `{"model":"e","input":[]}`, `{"model":"e"}`, `nope`} {
		if status, _ := embed(t, body); status != 400 {
			t.Errorf("%s: status %d, want 400", body, status)
		}
	}
}

// TestUnknownRoutesAnswerLikeOpenAI checks that a path the simulator does
// not serve, or a method a path does not take, gets an OpenAI-shaped error
// (404 not_found, 405 method_not_allowed with Allow), not the mux's plain
// text.
func TestUnknownRoutesAnswerLikeOpenAI(t *testing.T) {
	srv := httptest.NewServer(sim.New(sim.Config{}))
	defer srv.Close()
	for _, tc := range []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{http.MethodGet, "/v1/chat/completions", 405, "method_not_allowed", "POST"},
		{http.MethodDelete, "/v1/embeddings", 405, "method_not_allowed", "POST"},
		{http.MethodGet, "/v1/no-such-thing", 404, "not_found", ""},
	} {
		req, err := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct {
			Error struct {
				Message, Type, Code string
			}
		}
		if err := json.Unmarshal(b, &e); err != nil || resp.StatusCode != tc.status || e.Error.Code != tc.code || e.Error.Message == "" ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s %s: %d %q %s, want %d with an OpenAI error of code %s", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), b, tc.status, tc.code)
		}
		if got := resp.Header.Get("Allow"); !strings.Contains(got, tc.allow) {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
}
