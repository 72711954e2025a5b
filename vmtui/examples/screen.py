start_all()

with subtest("the shell on the screen answers the keyboard"):
    # The prompt ("desk# ") shows once the framebuffer console is up.
    desk.wait_for_text("desk")
    desk.send_chars("echo typed at the keyboard > /tmp/typed\n")
    desk.wait_until_succeeds("grep -q 'typed at the keyboard' /tmp/typed")

with subtest("OCR reads what the guest writes on its screen"):
    desk.succeed("printf '\\033c\\n\\n   GRAPHICAL NODES WORK\\n' > /dev/tty1")
    desk.wait_for_text("GRAPHICAL NODES")
    desk.screenshot("desk")
