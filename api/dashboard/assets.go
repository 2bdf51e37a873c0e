package dashboard

import (
	"embed"
	"mime"
	"path"
)

//go:embed assets
var assets embed.FS

// Asset returns the page file name ("index.html", "app.js", "style.css")
// and its content type; ok is false for any other name. The files are
// embedded in the binary: the page needs no network beyond its server.
func Asset(name string) (body []byte, contentType string, ok bool) {
	if name == "" || path.Base(name) != name {
		return nil, "", false
	}
	b, err := assets.ReadFile("assets/" + name)
	if err != nil {
		return nil, "", false
	}
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	return b, ct, true
}
