# A todo list served by one VM and read by another, as a NixOS test.
#
# `server` publishes a JSON list of todos over HTTP on port 3000; `client`
# fetches it across the test VLAN by host name and checks what came back.
#
#   vmtui examples/todos-nixos.nix      # needs <nixpkgs> in NIX_PATH
#   nix run .#todos                     # from a checkout of vmtui's flake
#
# The file is a function with a default for `pkgs`, so nix-build (and thus
# vmtui) can call it as is; the flake passes its own pkgs.
{
  pkgs ? import <nixpkgs> { },
}:
let
  todos = [
    {
      id = 1;
      task = "write the test script";
      done = true;
    }
    {
      id = 2;
      task = "boot the server and the client";
      done = true;
    }
    {
      id = 3;
      task = "read the list across the VLAN";
      done = false;
    }
  ];

  # A directory holding only todos.json, for the HTTP server to publish.
  webRoot = pkgs.writeTextDir "todos.json" (builtins.toJSON todos);
in
pkgs.testers.runNixOSTest {
  name = "todos";

  nodes.server =
    { pkgs, ... }:
    {
      networking.firewall.allowedTCPPorts = [ 3000 ];
      systemd.services.todos = {
        description = "Todo list over HTTP";
        wantedBy = [ "multi-user.target" ];
        after = [ "network.target" ];
        serviceConfig = {
          ExecStart = "${pkgs.python3}/bin/python3 -m http.server 3000 --directory ${webRoot}";
          DynamicUser = true;
        };
      };
    };

  nodes.client =
    { pkgs, ... }:
    {
      environment.systemPackages = [
        pkgs.curl
        pkgs.jq
      ];
    };

  testScript = ''
    import json

    start_all()

    with subtest("the server publishes the list"):
        server.wait_for_unit("todos.service")
        server.wait_for_open_port(3000)

    with subtest("the client reads it by host name, across the VLAN"):
        client.wait_for_unit("multi-user.target")
        listing = json.loads(client.succeed("curl --fail --silent http://server:3000/todos.json"))
        assert [todo["id"] for todo in listing] == [1, 2, 3], listing

    with subtest("exactly one todo is still open"):
        still_open = client.succeed(
            "curl --fail --silent http://server:3000/todos.json"
            " | jq -r '.[] | select(.done | not) | .task'"
        )
        assert still_open.strip() == "read the list across the VLAN", still_open
  '';
}
