//! Database servers of a test's own, for outage tests: a PostgreSQL or MariaDB instance in a
//! temporary directory on a free port, which the test may stop, restart or kill without
//! touching the machine's shared servers. Built from the servers' own binaries (`initdb` and
//! `pg_ctl`, `mariadb-install-db` and `mariadbd`); as root, PostgreSQL runs as `postgres`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    /// PostgreSQL.
    Postgres,
    /// MariaDB.
    MariaDb,
}

/// A private database server; stopped and removed when dropped.
pub struct PrivateServer {
    product: Product,
    dir: tempfile::TempDir,
    port: u16,
    /// MariaDB's process (PostgreSQL's is managed by `pg_ctl`).
    child: Option<Child>,
    running: bool,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The directory of PostgreSQL's server binaries (`pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/*/bin`).
fn postgres_bin() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("pg_ctl").exists() {
            return dir;
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|d| d.join("pg_ctl").exists());
    versions.sort();
    versions
        .pop()
        .expect("PostgreSQL's server binaries (initdb, pg_ctl) are installed")
}

/// Runs `program` (as `postgres` when this is root and `as_postgres`), panicking with its
/// output when it fails.
fn run(program: &Path, args: &[&str], as_postgres: bool) {
    let mut command = if as_postgres && is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    let output = command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        output.status.success(),
        "{} {args:?} failed:\n{}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl PrivateServer {
    /// A fresh PostgreSQL server, started.
    ///
    /// # Panics
    ///
    /// When it cannot be created or started.
    pub fn postgres() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("insta-router-pg-")
            .tempdir()
            .expect("temporary directory");
        if is_root() {
            // The server runs as `postgres`, which must reach and own its directory.
            run(
                Path::new("chmod"),
                &["755", &dir.path().display().to_string()],
                false,
            );
            run(
                Path::new("chown"),
                &["postgres", &dir.path().display().to_string()],
                false,
            );
        }
        let data = dir.path().join("data");
        run(
            &postgres_bin().join("initdb"),
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            true,
        );
        let mut server = Self {
            product: Product::Postgres,
            dir,
            port: free_port(),
            child: None,
            running: false,
        };
        server.start();
        server
    }

    /// A fresh MariaDB server with an empty database `app`, started.
    ///
    /// # Panics
    ///
    /// When it cannot be created or started.
    pub fn mariadb() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("insta-router-my-")
            .tempdir()
            .expect("temporary directory");
        let data = dir.path().join("data");
        let mut args = vec![
            "--no-defaults".to_owned(),
            format!("--datadir={}", data.display()),
            "--auth-root-authentication-method=normal".to_owned(),
            "--skip-test-db".to_owned(),
        ];
        if is_root() {
            args.push("--user=root".to_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(Path::new("mariadb-install-db"), &args, false);
        let mut server = Self {
            product: Product::MariaDb,
            dir,
            port: free_port(),
            child: None,
            running: false,
        };
        server.start();
        run(
            Path::new("mariadb"),
            &[
                "-h",
                "127.0.0.1",
                "-P",
                &server.port.to_string(),
                "-u",
                "root",
                "-e",
                "CREATE DATABASE app",
            ],
            false,
        );
        server
    }

    /// Which product it is.
    pub fn product(&self) -> Product {
        self.product
    }

    /// The URL of its database for the server under test.
    pub fn url(&self) -> String {
        match self.product {
            Product::Postgres => format!("postgres://postgres@127.0.0.1:{}/postgres", self.port),
            Product::MariaDb => format!("mysql://root@127.0.0.1:{}/app", self.port),
        }
    }

    fn pg_ctl(&self, action: &str) {
        let data = self.dir.path().join("data").display().to_string();
        let log = self.dir.path().join("log").display().to_string();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let mut args = vec!["-D", &data, "-l", &log, "-w", "-t", "60"];
        match action {
            "start" => args.extend(["-o", &options, "start"]),
            other => args.extend(["-m", "fast", other]),
        }
        run(&postgres_bin().join("pg_ctl"), &args, true);
    }

    /// Starts it and waits until it takes connections.
    ///
    /// # Panics
    ///
    /// When it does not start within a minute.
    pub fn start(&mut self) {
        match self.product {
            Product::Postgres => self.pg_ctl("start"),
            Product::MariaDb => {
                let path = |name: &str| self.dir.path().join(name).display().to_string();
                let mut command = Command::new("mariadbd");
                command.args([
                    "--no-defaults".to_owned(),
                    format!("--datadir={}", path("data")),
                    format!("--port={}", self.port),
                    "--bind-address=127.0.0.1".to_owned(),
                    format!("--socket={}", path("mysqld.sock")),
                    format!("--pid-file={}", path("mysqld.pid")),
                    format!("--log-error={}", path("error.log")),
                    "--skip-grant-tables".to_owned(),
                    "--skip-log-bin".to_owned(),
                    "--innodb-buffer-pool-size=64M".to_owned(),
                ]);
                if is_root() {
                    command.arg("--user=root");
                }
                let child = command
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start mariadbd");
                self.child = Some(child);
                let deadline = Instant::now() + Duration::from_secs(60);
                while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                    assert!(
                        Instant::now() < deadline,
                        "mariadbd did not start:\n{}",
                        std::fs::read_to_string(path("error.log")).unwrap_or_default()
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        self.running = true;
    }

    /// Stops it cleanly (PostgreSQL's fast shutdown: open transactions are aborted and
    /// clients disconnected; MariaDB's SIGTERM) and waits until it is down.
    ///
    /// # Panics
    ///
    /// When it does not stop within a minute.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        match self.product {
            Product::Postgres => self.pg_ctl("stop"),
            Product::MariaDb => {
                if let Some(mut child) = self.child.take() {
                    run(
                        Path::new("kill"),
                        &["-TERM", &child.id().to_string()],
                        false,
                    );
                    let _ = child.wait();
                }
            }
        }
        self.running = false;
    }

    /// Stops and starts it again, as an operator's restart does.
    pub fn restart(&mut self) {
        match self.product {
            Product::Postgres => self.pg_ctl("restart"),
            Product::MariaDb => {
                self.stop();
                self.start();
            }
        }
        self.running = true;
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        match self.product {
            Product::Postgres => {
                let data = self.dir.path().join("data").display().to_string();
                let mut command = if is_root() {
                    let mut c = Command::new("runuser");
                    c.args(["-u", "postgres", "--"])
                        .arg(postgres_bin().join("pg_ctl"));
                    c
                } else {
                    Command::new(postgres_bin().join("pg_ctl"))
                };
                let _ = command
                    .args(["-D", &data, "-m", "immediate", "-w", "stop"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            Product::MariaDb => {
                if let Some(mut child) = self.child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }
}
