// Command pulumi-language-python is agentswarm's stand-in for Pulumi's Python language host.
//
// Why it exists: upstream's language host lives in its own Go module
// (github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3) and the Go module proxy this project
// can reach refuses every version of it, so it cannot be built here. The language host is only the bridge
// between the engine and the Python SDK: it tells the engine which provider plugins the program needs and
// starts `pulumi-language-python-exec`, the Python shim that ships in github.com/pulumi/pulumi/sdk/v3 at the
// same version as the pip package (3.272.0), which then talks to the real engine over gRPC. This program does
// exactly that, using the SDK's own python toolchain package for virtualenv handling. It also runs plugins
// written in Python (RunPlugin: a directory with PulumiPlugin.yaml, such as this project's component
// provider), which is how `pulumi package get-schema`/`add` start them. Nothing more: no code generation,
// no `pulumi new` templates, no policy packs. Unsupported calls answer gRPC Unimplemented,
// which the CLI treats as "older language host".
//
// Built by scripts/pulumi-engine against github.com/pulumi/pulumi/sdk/v3 (pinned to the Python SDK version).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"github.com/pulumi/pulumi/sdk/v3/python/toolchain"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
)

// version is set with -ldflags by scripts/pulumi-engine: "<sdk version>+agentswarm".
var version = "0.0.0+agentswarm"

// exitCodeUserActionable is what pulumi-language-python-exec returns after it has already shown the user an
// error; the engine must then stop without printing a second, less useful message.
const exitCodeUserActionable = 32

// pluginScan runs inside the program's Python and prints the pulumi-plugin.json of every installed
// distribution that ships one. That file is how Pulumi packages (pulumi_kubernetes, pulumi_random, ...) declare
// which provider plugin, at which version, their generated code talks to.
const pluginScan = `
import importlib.metadata as md, json, sys
out = []
for dist in md.distributions():
    for f in dist.files or ():
        if f.name == "pulumi-plugin.json":
            try:
                data = json.loads(f.read_text())
            except Exception as exc:
                sys.stderr.write("unreadable %s in %s: %s\n" % (f, dist.metadata["Name"], exc))
                continue
            data["_dist"] = dist.metadata["Name"]
            out.append(data)
json.dump(out, sys.stdout)
`

type pluginJSON struct {
	Resource         bool   `json:"resource"`
	Name             string `json:"name"`
	Version          string `json:"version"`
	Server           string `json:"server"`
	Dist             string `json:"_dist"`
	Parameterization *struct {
		Name    string `json:"name"`
		Version string `json:"version"`
		Value   []byte `json:"value"`
	} `json:"parameterization"`
}

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	mu            sync.Mutex
	engineAddress string
	tracing       string
	execScript    string
}

func main() {
	flags := flag.NewFlagSet("pulumi-language-python", flag.ContinueOnError)
	tracing := flags.String("tracing", "", "Zipkin-compatible tracing endpoint (passed through to the program)")
	flags.Bool("logtostderr", false, "accepted for compatibility with the engine's plugin launcher")
	flags.Bool("logflow", false, "accepted for compatibility with the engine's plugin launcher")
	flags.Int("v", 0, "accepted for compatibility with the engine's plugin launcher")
	if err := flags.Parse(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	h := &host{tracing: *tracing}
	if args := flags.Args(); len(args) > 0 {
		h.engineAddress = args[len(args)-1]
	}

	script, err := findExecScript()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	h.execScript = script

	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, h)
			return nil
		},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "could not start language host RPC server: %v\n", err)
		os.Exit(1)
	}
	// The engine reads the port from our first line of stdout.
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		fmt.Fprintf(os.Stderr, "language host RPC stopped serving: %v\n", err)
		os.Exit(1)
	}
}

// findExecScript locates pulumi-language-python-exec next to this binary, where scripts/pulumi-engine
// copies it from the sdk/v3 module.
func findExecScript() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	if resolved, err := filepath.EvalSymlinks(self); err == nil {
		self = resolved
	}
	script := filepath.Join(filepath.Dir(self), "pulumi-language-python-exec")
	if _, err := os.Stat(script); err != nil {
		return "", fmt.Errorf("pulumi-language-python-exec not found next to %s (rebuild with scripts/pulumi-engine): %w",
			self, err)
	}
	return script, nil
}

// options is the `runtime.options` block of Pulumi.yaml that matters here.
type options struct {
	toolchain  string
	virtualenv string
}

func parseOptions(s *structpb.Struct) (options, error) {
	var o options
	if s == nil {
		return o, nil
	}
	for k, v := range s.AsMap() {
		switch k {
		case "toolchain":
			str, ok := v.(string)
			if !ok {
				return o, fmt.Errorf("runtime option toolchain must be a string, got %v", v)
			}
			o.toolchain = str
		case "virtualenv":
			str, ok := v.(string)
			if !ok {
				return o, fmt.Errorf("runtime option virtualenv must be a string, got %v", v)
			}
			o.virtualenv = str
		}
	}
	return o, nil
}

func (h *host) toolchainFor(info *pulumirpc.ProgramInfo) (toolchain.Toolchain, error) {
	if info == nil {
		return nil, errors.New("the engine sent no program info; this language host needs Pulumi CLI >= 3.120")
	}
	opts, err := parseOptions(info.GetOptions())
	if err != nil {
		return nil, err
	}
	var tc toolchain.PythonOptions
	tc.Root = info.GetRootDirectory()
	tc.ProgramDir = info.GetProgramDirectory()
	tc.Virtualenv = opts.virtualenv
	switch opts.toolchain {
	case "", "pip":
		tc.Toolchain = toolchain.Pip
	case "uv":
		tc.Toolchain = toolchain.Uv
	case "poetry":
		tc.Toolchain = toolchain.Poetry
	default:
		return nil, fmt.Errorf("runtime option toolchain %q is not one of pip, uv, poetry", opts.toolchain)
	}
	return toolchain.ResolveToolchain(tc)
}

func (h *host) Handshake(
	_ context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if req.GetEngineAddress() != "" {
		h.engineAddress = req.GetEngineAddress()
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *host) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

// scanPlugins returns the provider plugins declared by the Python packages installed for the program.
func (h *host) scanPlugins(ctx context.Context, info *pulumirpc.ProgramInfo) ([]pluginJSON, error) {
	tc, err := h.toolchainFor(info)
	if err != nil {
		return nil, err
	}
	if err := tc.ValidateVenv(ctx); err != nil {
		return nil, err
	}
	cmd, err := tc.Command(ctx, "-c", pluginScan)
	if err != nil {
		return nil, err
	}
	cmd.Dir = info.GetProgramDirectory()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("listing installed Pulumi packages with %s failed: %w: %s", cmd.Path, err, stderr.String())
	}
	var found []pluginJSON
	if err := json.Unmarshal(out, &found); err != nil {
		return nil, fmt.Errorf("listing installed Pulumi packages: bad output %q: %w", out, err)
	}
	var plugins []pluginJSON
	for _, p := range found {
		if !p.Resource {
			continue
		}
		if p.Name == "" {
			// Same fallback as upstream: the distribution name minus its "pulumi_"/"pulumi-" prefix.
			p.Name = strings.TrimPrefix(strings.TrimPrefix(strings.ToLower(p.Dist), "pulumi_"), "pulumi-")
		}
		plugins = append(plugins, p)
	}
	return plugins, nil
}

func (h *host) GetRequiredPackages(
	ctx context.Context, req *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	plugins, err := h.scanPlugins(ctx, req.GetInfo())
	if err != nil {
		return nil, err
	}
	resp := &pulumirpc.GetRequiredPackagesResponse{}
	for _, p := range plugins {
		dep := &pulumirpc.PackageDependency{
			Kind:    "resource",
			Name:    p.Name,
			Version: p.Version,
			Server:  p.Server,
		}
		if p.Parameterization != nil {
			dep.Parameterization = &pulumirpc.PackageParameterization{
				Name:    p.Parameterization.Name,
				Version: p.Parameterization.Version,
				Value:   p.Parameterization.Value,
			}
		}
		resp.Packages = append(resp.Packages, dep)
	}
	return resp, nil
}

func (h *host) GetRequiredPlugins(
	ctx context.Context, req *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	plugins, err := h.scanPlugins(ctx, req.GetInfo())
	if err != nil {
		return nil, err
	}
	resp := &pulumirpc.GetRequiredPluginsResponse{}
	for _, p := range plugins {
		if p.Parameterization != nil {
			continue // parameterized packages are only expressible through GetRequiredPackages
		}
		resp.Plugins = append(resp.Plugins, &pulumirpc.PluginDependency{
			Kind: "resource", Name: p.Name, Version: p.Version, Server: p.Server,
		})
	}
	return resp, nil
}

func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	info := req.GetInfo()
	tc, err := h.toolchainFor(info)
	if err != nil {
		return nil, err
	}
	if err := tc.ValidateVenv(ctx); err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}

	h.mu.Lock()
	engine := h.engineAddress
	h.mu.Unlock()

	args := []string{"-u", h.execScript}
	add := func(flag, value string) {
		if value != "" {
			args = append(args, "--"+flag, value)
		}
	}
	add("monitor", req.GetMonitorAddress())
	add("engine", engine)
	add("project", req.GetProject())
	add("root_directory", info.GetRootDirectory())
	add("stack", req.GetStack())
	add("pwd", req.GetPwd())
	add("dry_run", strconv.FormatBool(req.GetDryRun()))
	add("parallel", strconv.Itoa(int(req.GetParallel())))
	add("organization", req.GetOrganization())
	add("tracing", h.tracing)
	program := info.GetEntryPoint()
	if program == "" {
		program = "."
	}
	args = append(args, program)
	args = append(args, req.GetArgs()...)

	configJSON, err := json.Marshal(req.GetConfig())
	if err != nil {
		return nil, fmt.Errorf("serializing stack config: %w", err)
	}
	secretKeys := req.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{}
	}
	secretKeysJSON, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, fmt.Errorf("serializing secret config keys: %w", err)
	}

	cmd, err := tc.Command(ctx, args...)
	if err != nil {
		return nil, err
	}
	cmd.Dir = req.GetPwd()
	if cmd.Dir == "" {
		cmd.Dir = info.GetProgramDirectory()
	}
	if cmd.Env == nil { // no virtualenv: the toolchain leaves the environment to be inherited
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, "PULUMI_CONFIG="+string(configJSON), "PULUMI_CONFIG_SECRET_KEYS="+string(secretKeysJSON))
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			if exitErr.ExitCode() == exitCodeUserActionable {
				return &pulumirpc.RunResponse{Bail: true}, nil
			}
			return &pulumirpc.RunResponse{
				Error: fmt.Sprintf("Program exited with non-zero exit code: %d", exitErr.ExitCode()),
			}, nil
		}
		return &pulumirpc.RunResponse{
			Error: fmt.Sprintf("Problem executing program (could not run language executor): %v", err),
		}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}

// RunPlugin starts a plugin written in Python: `python -u <program directory> <args...>` in the plugin's
// environment (the args carry the engine's address and flags). The plugin (e.g. Pulumi's
// component_provider_host) prints its gRPC port on stdout; both streams go back to the engine, then the
// exit code.
func (h *host) RunPlugin(
	req *pulumirpc.RunPluginRequest, server grpc.ServerStreamingServer[pulumirpc.RunPluginResponse],
) error {
	info := req.GetInfo()
	tc, err := h.toolchainFor(info)
	if err != nil {
		return err
	}
	ctx := server.Context()
	if err := tc.ValidateVenv(ctx); err != nil {
		return err
	}
	closer, stdout, stderr, err := rpcutil.MakeRunPluginStreams(server, false)
	if err != nil {
		return err
	}

	program := info.GetProgramDirectory()
	if entry := info.GetEntryPoint(); entry != "" && entry != "." {
		program = filepath.Join(program, entry)
	}
	args := append([]string{"-u", program}, req.GetArgs()...)
	cmd, err := tc.Command(ctx, args...)
	if err != nil {
		return err
	}
	cmd.Dir = req.GetPwd()
	if cmd.Dir == "" {
		cmd.Dir = info.GetProgramDirectory()
	}
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, req.GetEnv()...)
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	runErr := cmd.Run()
	if err := closer.Close(); err != nil { // flushes the last output before the exit code
		return err
	}
	code := 0
	if runErr != nil {
		var exitErr *exec.ExitError
		if !errors.As(runErr, &exitErr) {
			return fmt.Errorf("could not start plugin %s: %w", program, runErr)
		}
		code = exitErr.ExitCode()
	}
	return server.Send(&pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Exitcode{Exitcode: int32(code)}})
}

func (h *host) InstallDependencies(
	req *pulumirpc.InstallDependenciesRequest, server grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse],
) error {
	// Installing packages is the project's job (pip install -e .[dev]); we only check the environment exists.
	tc, err := h.toolchainFor(req.GetInfo())
	if err != nil {
		return err
	}
	return tc.ValidateVenv(server.Context())
}

func (h *host) RuntimeOptionsPrompts(
	context.Context, *pulumirpc.RuntimeOptionsRequest,
) (*pulumirpc.RuntimeOptionsResponse, error) {
	return &pulumirpc.RuntimeOptionsResponse{}, nil
}

func (h *host) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	tc, err := h.toolchainFor(req.GetInfo())
	if err != nil {
		return nil, err
	}
	about, err := tc.About(ctx)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.AboutResponse{
		Executable: about.PythonExecutable,
		Version:    about.PythonVersion.String(),
		Metadata:   map[string]string{"languageHost": "agentswarm " + version},
	}, nil
}

func (h *host) GetProgramDependencies(
	ctx context.Context, req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	tc, err := h.toolchainFor(req.GetInfo())
	if err != nil {
		return nil, err
	}
	pkgs, err := tc.ListPackages(ctx, req.GetTransitiveDependencies())
	if err != nil {
		return nil, err
	}
	resp := &pulumirpc.GetProgramDependenciesResponse{}
	for _, p := range pkgs {
		resp.Dependencies = append(resp.Dependencies, &pulumirpc.DependencyInfo{Name: p.Name, Version: p.Version})
	}
	return resp, nil
}
