start_all()
desk.wait_until_succeeds("test -e /dev/fb0")
desk.succeed("printf '\\033c\\n\\n   GIRAFFE CROSSING\\n' > /dev/tty1")
desk.wait_for_text("GIRAFFE")
