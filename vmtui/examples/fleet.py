# The fleet test: ten tiny nodes on one VLAN (see fleet.toml).  Every node
# boots, then each reaches the next by host name; the web servers keep
# logging to their consoles meanwhile.
start_all()

nodes = [router, dns, db1, db2, web1, web2, web3, cache, client1, client2]

with subtest("every node is up"):
    for node in nodes:
        node.succeed("true")

with subtest("each node reaches the next across the VLAN"):
    for node, peer in zip(nodes, nodes[1:] + nodes[:1]):
        node.succeed(f"ping -c 1 -W 10 {peer.name}")
