// render - renders the Quarry Helm chart the way `helm template` does, for
// machines without helm (see deploy/k8s/check.sh).
//
//	render [-f extra-values.yaml]... <chart-dir>
//
// Same engine as Helm 3: Go text/template with sprig v3 functions, Helm's
// include/required/toYaml/fromYaml/toJson/tpl, missingkey=zero and values
// decoded the way Helm decodes them (numbers become float64, so a template
// printing a large integer without `int64` shows up here as it would in
// Helm). Not covered: lookup, .Capabilities, subcharts, schema validation
// (check.sh does that separately).
//
// Built in GOPATH mode against Debian's golang-github-masterminds-sprig-dev
// and golang-gopkg-yaml.v2-dev; no network needed.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v2"
)

// files is .Files: chart files read relative to the chart directory.
type files struct{ dir string }

func (f files) Get(name string) string {
	b, err := os.ReadFile(filepath.Join(f.dir, filepath.FromSlash(name)))
	if err != nil {
		return ""
	}
	return string(b)
}

// normalize turns yaml.v2 output into what Helm sees after its YAML->JSON
// round trip: string-keyed maps and float64 numbers.
func normalize(v interface{}) interface{} {
	switch t := v.(type) {
	case map[interface{}]interface{}:
		m := make(map[string]interface{}, len(t))
		for k, val := range t {
			m[fmt.Sprint(k)] = normalize(val)
		}
		return m
	case map[string]interface{}:
		for k, val := range t {
			t[k] = normalize(val)
		}
		return t
	case []interface{}:
		for i := range t {
			t[i] = normalize(t[i])
		}
		return t
	case int:
		return float64(t)
	case int64:
		return float64(t)
	case uint64:
		return float64(t)
	}
	return v
}

func readYAML(file string) (map[string]interface{}, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var v interface{}
	if err := yaml.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	if v == nil {
		return map[string]interface{}{}, nil
	}
	m, ok := normalize(v).(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("%s: not a mapping", file)
	}
	return m, nil
}

// merge deep-merges src into dst (src wins), as Helm does for -f files.
func merge(dst, src map[string]interface{}) {
	for k, v := range src {
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

func toYAML(v interface{}) string {
	// Helm: sigs.k8s.io/yaml (JSON tags, then yaml.v2), trailing newline cut.
	j, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	var generic interface{}
	if err := yaml.Unmarshal(j, &generic); err != nil {
		return ""
	}
	b, err := yaml.Marshal(generic)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(b), "\n")
}

func main() {
	var extra []string
	args := os.Args[1:]
	for len(args) >= 2 && args[0] == "-f" {
		extra = append(extra, args[1])
		args = args[2:]
	}
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: render [-f values.yaml]... <chart-dir>")
		os.Exit(2)
	}
	dir := args[0]
	if err := run(dir, extra); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}

func run(dir string, extra []string) error {
	chart, err := readYAML(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return err
	}
	values, err := readYAML(filepath.Join(dir, "values.yaml"))
	if err != nil {
		return err
	}
	for _, f := range extra {
		m, err := readYAML(f)
		if err != nil {
			return err
		}
		merge(values, m)
	}
	name, _ := chart["name"].(string)
	chartData := map[string]interface{}{
		"Name": name, "Version": chart["version"], "AppVersion": chart["appVersion"],
		"Description": chart["description"], "Type": chart["type"],
	}

	root := template.New("chart").Option("missingkey=zero")
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = func(s string) map[string]interface{} {
		var v interface{}
		if err := yaml.Unmarshal([]byte(s), &v); err != nil {
			return map[string]interface{}{"Error": err.Error()}
		}
		m, _ := normalize(v).(map[string]interface{})
		return m
	}
	funcs["toJson"] = func(v interface{}) string {
		b, _ := json.Marshal(v)
		return string(b)
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return v, fmt.Errorf("%s", msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return v, fmt.Errorf("%s", msg)
		}
		return v, nil
	}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, data)
		return strings.ReplaceAll(buf.String(), "<no value>", ""), err
	}
	root.Funcs(funcs)

	tdir := filepath.Join(dir, "templates")
	entries, err := os.ReadDir(tdir)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(tdir, e.Name()))
		if err != nil {
			return err
		}
		tname := path.Join(name, "templates", e.Name())
		if _, err := root.New(tname).Parse(string(b)); err != nil {
			return err
		}
		if !strings.HasPrefix(e.Name(), "_") && (strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
			names = append(names, tname)
		}
	}
	sort.Strings(names)

	for _, tname := range names {
		data := map[string]interface{}{
			"Values": values,
			"Chart":  chartData,
			"Release": map[string]interface{}{
				"Name": "quarry", "Namespace": "default", "Service": "Helm",
				"IsInstall": true, "IsUpgrade": false, "Revision": 1,
			},
			"Files":    files{dir: dir},
			"Template": map[string]interface{}{"Name": tname, "BasePath": path.Join(name, "templates")},
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, tname, data); err != nil {
			return err
		}
		out := strings.ReplaceAll(buf.String(), "<no value>", "")
		// Like Helm: one document per "---", each under a Source comment.
		for _, doc := range strings.Split(out, "\n---") {
			doc = strings.TrimPrefix(strings.TrimSpace(strings.TrimPrefix(doc, "---")), "---")
			if strings.TrimSpace(doc) == "" {
				continue
			}
			fmt.Printf("---\n# Source: %s\n%s\n", tname, strings.TrimSpace(doc))
		}
	}
	return nil
}
