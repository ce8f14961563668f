package check

// The fixes a row suggests, in English; a report in another language says
// them with the catalogue ("check.fixtext."+id).
const (
	fixSSHPort        = "open the SSH port to the institute's address and check that sshd runs"
	fixHostKey        = "confirm the server's fingerprint with the difusor and pin it (known_hosts or host_key)"
	fixAuth           = "install the institute's public key in the SSH user's authorized_keys on the difusor"
	fixFreeDiskProof  = "send the institute proof of the free disk (df -h of root), or use OpenSSH's SFTP server"
	fixFreeDisk       = "free or add disk space on the filesystem that holds root"
	fixRetained       = "free disk space on the difusor: the retained cuts of the night would not fit"
	fixSetURL         = "set url: to the public address at which the difusor serves root"
	fixCheckURL       = "check that url is the public address that serves root"
	fixFileModes      = "let the web server's user read what the SFTP user writes: keep file_mode 0644 and dir_mode 0755 in the config, make root and its parent directories searchable (o+x), set the SFTP server's umask to 022 (internal-sftp -u 022), or run the web server as a user in the SFTP user's group"
	fixClock          = "synchronise the difusor's clock (NTP: systemd-timesyncd or chrony); Last-Modified and logs then agree with the institute's"
	fixPosixRename    = "prepcast cannot switch files atomically on this server: use OpenSSH's sftp-server or internal-sftp (Subsystem sftp internal-sftp in sshd_config)"
	fixExtensions     = "an OpenSSH SFTP server (sftp-server or internal-sftp) offers every extension prepcast uses"
	fixReadBack       = "lift the SFTP server's download limit for prepcast's user (MySecureShell: Download 0 and GlobalDownload 0 in /etc/ssh/sftp_config, as Debian ships it 5k and 50k)"
	fixUpload         = "raise the difusor's bandwidth or the SSH server's capacity (CPU for the cipher); check that nothing throttles SFTP"
	fixMainJSONPublic = "the web server must serve json/main.json to everyone"
	fixContradicting  = "remove them (nginx: expires off; no max-age/public for this location)"
	fixCertInvalid    = "install a certificate for the site's name from a public authority (e.g. Let's Encrypt), with its whole chain"
	fixCertRenew      = "renew the certificate now, or make sure automatic renewal works, so that it covers the whole publication period"
	fixWebServer      = "check that the web server runs and that url is its public address"
	fixWrite          = "give the SSH user write access to root and everything below it"
	fixSessions       = "allow at least 9 sessions per connection (OpenSSH: MaxSessions, default 10)"
	fixCacheControl   = `add the rule to the web server for /json/main.json, e.g. nginx: location = /json/main.json { add_header Cache-Control "no-cache, no-store, must-revalidate" always; expires off; } (Apache: Header always set Cache-Control "no-cache, no-store, must-revalidate" in <Files "main.json">)`
)

// fixIDs maps each fix to its catalogue id.
var fixIDs = map[string]string{
	fixSSHPort:        "ssh_port",
	fixHostKey:        "host_key",
	fixAuth:           "auth",
	fixFreeDiskProof:  "free_disk_proof",
	fixFreeDisk:       "free_disk",
	fixRetained:       "retained",
	fixSetURL:         "set_url",
	fixCheckURL:       "check_url",
	fixFileModes:      "file_modes",
	fixClock:          "clock",
	fixPosixRename:    "posix_rename",
	fixExtensions:     "extensions",
	fixUpload:         "upload",
	fixReadBack:       "read_back",
	fixMainJSONPublic: "main_json_public",
	fixContradicting:  "contradicting",
	fixCertInvalid:    "cert_invalid",
	fixCertRenew:      "cert_renew",
	fixWebServer:      "web_server",
	fixWrite:          "write",
	fixSessions:       "sessions",
	fixCacheControl:   "cache_control",
}
