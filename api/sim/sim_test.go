package sim_test

import (
	"bufio"
	"encoding/json"
	"io"
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
