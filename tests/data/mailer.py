start_all()
with subtest("mail is delivered"):
    mailer.wait_for_unit("postfix.service")
    mailer.succeed("echo hi | sendmail alice")
    mailer.succeed("test -s /var/mail/alice")
