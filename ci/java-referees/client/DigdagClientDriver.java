// Drives Digdag's own Java REST client (io.digdag:digdag-client, what `digdag push`, `start`,
// `retry`, `kill`, `log` and `secrets` use) against a Digdag-compatible endpoint, the way those
// commands call it, and prints what the client saw as one JSON object a line:
//   {"step": NAME, "ok": true, "value": ...}    the client's own model, written back as JSON
//   {"step": NAME, "ok": false, "status": 409, "body": "...", "error": "..."}
// A step that fails does not stop the run: every later step still reports.
//
//   java -cp 'lib/*:classes' DigdagClientDriver URL PROJECT_V1 PROJECT_V2
//   env TD_API_KEY: sent as TD's `Authorization: TD1 <key>` header (never printed)
//
// PROJECT_V1 holds wf.dig (a task that succeeds, then one that fails) and slow.dig (a query
// that runs until killed, as +slow+query); PROJECT_V2 is the same project with the failing
// task fixed.
// The tests that run this are tests/test_digdag_java_client.py.

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.google.common.base.Optional;
import io.digdag.client.DigdagClient;
import io.digdag.client.api.Id;
import io.digdag.client.api.LocalTimeOrInstant;
import io.digdag.client.api.RestLogFileHandle;
import io.digdag.client.api.RestProject;
import io.digdag.client.api.RestSessionAttempt;
import io.digdag.client.api.RestSessionAttemptRequest;
import io.digdag.client.api.RestTask;
import io.digdag.client.api.RestWorkflowDefinition;
import io.digdag.client.api.RestWorkflowSessionTime;
import io.digdag.client.api.SessionTimeTruncate;
import io.digdag.client.config.Config;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;
import org.apache.commons.compress.compressors.gzip.GzipCompressorOutputStream;

import javax.ws.rs.ClientErrorException;
import javax.ws.rs.WebApplicationException;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.attribute.PosixFilePermission;
import java.time.Instant;
import java.time.LocalDateTime;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.Callable;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import java.util.zip.GZIPInputStream;

public class DigdagClientDriver
{
    private static final ObjectMapper JSON = DigdagClient.objectMapper();
    private static final String PROJECT = "java_ref";

    private final DigdagClient client;
    private final Path work;

    private DigdagClientDriver(DigdagClient client, Path work)
    {
        this.client = client;
        this.work = work;
    }

    public static void main(String[] args)
        throws Exception
    {
        if (args.length != 3) {
            System.err.println("usage: DigdagClientDriver URL PROJECT_V1 PROJECT_V2");
            System.exit(2);
        }
        URI url = URI.create(args[0]);
        String key = System.getenv("TD_API_KEY");
        if (key == null || key.isEmpty()) {
            System.err.println("TD_API_KEY is not set");
            System.exit(2);
        }
        // As `digdag -e URL -H "Authorization=TD1 KEY"` and TD's toolbelt configure it.
        DigdagClient client = DigdagClient.builder()
            .host(url.getHost())
            .port(url.getPort())
            .ssl("https".equals(url.getScheme()))
            .header("Authorization", "TD1 " + key)
            .build();
        Path work = Files.createTempDirectory("digdag-client-driver");
        try {
            new DigdagClientDriver(client, work).run(Paths.get(args[1]), Paths.get(args[2]));
        }
        finally {
            client.close();
        }
    }

    private void run(Path v1, Path v2)
        throws Exception
    {
        // Before every command the CLI asks whether the server takes this client version.
        step("version", () -> client.getVersion());
        step("version_check", () -> client.checkClientVersion("0.10.0"));

        // digdag push: archive the folder as Archiver.createArchive does, PUT it.
        RestProject project = step("push", () -> client.putProjectRevision(PROJECT, "v1", archive(v1)));
        step("push_same_revision", () -> client.putProjectRevision(PROJECT, "v1", archive(v1)));
        step("projects", () -> client.getProjects());
        if (project == null) {
            return;
        }
        Id projectId = project.getId();
        step("project_by_name", () -> client.getProject(PROJECT));
        step("project_by_id", () -> client.getProject(projectId));
        step("workflows", () -> client.getWorkflowDefinitions(projectId));

        // digdag start java_ref wf --session 2026-01-01 -p greeting=hi
        RestWorkflowDefinition wf = step("workflow", () -> client.getWorkflowDefinition(projectId, "wf"));
        if (wf == null) {
            return;
        }
        step("workflow_by_id", () -> client.getWorkflowDefinition(wf.getId()));
        LocalTimeOrInstant day = LocalTimeOrInstant.of(LocalDateTime.parse("2026-01-01T00:00:00"));
        RestWorkflowSessionTime truncated = step("session_time",
                () -> client.getWorkflowTruncatedSessionTime(wf.getId(), day));
        // digdag start ... --session daily
        step("session_time_daily", () -> client.getWorkflowTruncatedSessionTime(
                    wf.getId(), LocalTimeOrInstant.of(Instant.parse("2026-03-04T05:06:07Z")), SessionTimeTruncate.DAY));
        Instant sessionTime = truncated != null
            ? truncated.getSessionTime().toInstant()
            : Instant.parse("2026-01-01T00:00:00Z");
        Config params = client.newConfig().set("greeting", "hi");
        RestSessionAttemptRequest request = RestSessionAttemptRequest.builder()
            .workflowId(wf.getId())
            .sessionTime(sessionTime)
            .retryAttemptName(Optional.absent())
            .params(params)
            .build();
        RestSessionAttempt started = step("start", () -> client.startSessionAttempt(request));
        // The same session again: Digdag answers 409 with the session's attempt (Start.java).
        step("start_again", () -> {
            try {
                client.startSessionAttempt(request);
                return "no conflict";
            }
            catch (ClientErrorException ex) {
                ObjectNode out = JSON.createObjectNode();
                out.put("status", ex.getResponse().getStatus());
                out.set("attempt", JSON.valueToTree(ex.getResponse().readEntity(RestSessionAttempt.class)));
                return out;
            }
        });
        if (started == null) {
            return;
        }
        RestSessionAttempt failed = step("wait", () -> waitDone(started.getId()));
        step("tasks", () -> client.getTasks(started.getId()));
        step("session", () -> client.getSession(started.getSessionId()));
        step("session_attempts", () -> client.getSessionAttempts(started.getSessionId(), Optional.absent(), Optional.absent()));
        step("attempts_of_project", () -> client.getSessionAttempts(PROJECT, Optional.absent()));
        step("attempts_of_workflow", () -> client.getSessionAttempts(PROJECT, "wf", Optional.absent()));

        // digdag log ID (and ID +wf+a)
        step("log_files", () -> client.getLogFileHandlesOfAttempt(started.getId()));
        step("log_files_of_task", () -> client.getLogFileHandlesOfTask(started.getId(), "+wf+a"));
        step("logs", () -> {
            ObjectNode out = JSON.createObjectNode();
            for (RestLogFileHandle h : client.getLogFileHandlesOfAttempt(started.getId()).getFiles()) {
                ObjectNode one = out.putObject(h.getFileName());
                one.put("task", h.getTaskName());
                one.put("has_direct", h.getDirect().isPresent());
                one.put("via_handle", gunzip(client.getLogFile(started.getId(), h)));
                one.put("via_api", gunzip(client.getLogFile(started.getId(), h.getFileName())));
            }
            return out;
        });

        // digdag push (the fix), then digdag retry ID --latest-revision --resume
        step("push_fix", () -> client.putProjectRevision(PROJECT, "v2", archive(v2)));
        RestSessionAttempt retried = step("retry", () -> {
            RestSessionAttempt prev = client.getSessionAttempt(started.getId());
            RestWorkflowDefinition latest = client.getWorkflowDefinition(
                    prev.getProject().getId(), prev.getWorkflow().getName());
            RestSessionAttemptRequest retry = RestSessionAttemptRequest.builder()
                .workflowId(latest.getId())
                .sessionTime(prev.getSessionTime().toInstant())
                .retryAttemptName(Optional.of(UUID.randomUUID().toString()))
                .params(prev.getParams())
                .build();
            return client.startSessionAttempt(RestSessionAttemptRequest.copyWithResume(
                        retry, RestSessionAttemptRequest.ResumeFailed.of(prev.getId())));
        });
        if (retried != null) {
            step("retry_wait", () -> waitDone(retried.getId()));
            step("retry_tasks", () -> client.getTasks(retried.getId()));
            step("retry_session", () -> client.getSession(retried.getSessionId()));
        }

        // digdag kill ID, on a running attempt and then on the finished one
        RestWorkflowDefinition slow = step("slow_workflow", () -> client.getWorkflowDefinition(projectId, "slow"));
        if (slow != null) {
            RestSessionAttempt running = step("slow_start", () -> client.startSessionAttempt(
                        RestSessionAttemptRequest.builder()
                            .workflowId(slow.getId())
                            .sessionTime(sessionTime)
                            .retryAttemptName(Optional.absent())
                            .params(client.newConfig())
                            .build()));
            if (running != null) {
                step("slow_running", () -> waitTaskRunning(running.getId(), "+slow+query"));
                step("kill", () -> {
                    client.killSessionAttempt(running.getId());
                    return "kill requested";
                });
                step("kill_wait", () -> waitDone(running.getId()));
                step("kill_tasks", () -> client.getTasks(running.getId()));
                step("kill_again", () -> {
                    client.killSessionAttempt(running.getId());
                    return "kill requested";
                });
            }
        }

        // digdag secrets --project java_ref --set td.apikey / (list) / --delete td.apikey
        step("secret_set", () -> {
            client.setProjectSecret(projectId, "td.apikey", "not-a-real-key");
            return "set";
        });
        step("secrets", () -> client.listProjectSecrets(projectId));
        step("secret_delete", () -> {
            client.deleteProjectSecret(projectId, "td.apikey");
            return "deleted";
        });
        step("secrets_after_delete", () -> client.listProjectSecrets(projectId));
    }

    private RestSessionAttempt waitDone(Id attemptId)
        throws InterruptedException
    {
        long deadline = System.nanoTime() + 60_000_000_000L;
        while (true) {
            RestSessionAttempt a = client.getSessionAttempt(attemptId);
            if (a.getDone() || System.nanoTime() > deadline) {
                return a;
            }
            Thread.sleep(100);
        }
    }

    private String waitTaskRunning(Id attemptId, String taskName)
        throws InterruptedException
    {
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (System.nanoTime() < deadline) {
            for (RestTask t : client.getTasks(attemptId).getTasks()) {
                if (t.getFullName().equals(taskName) && t.getState().equals("running")) {
                    Thread.sleep(300);  // let its query start
                    return "running";
                }
            }
            Thread.sleep(50);
        }
        return "not running after 30 s";
    }

    // The tar.gz `digdag push` sends (Archiver.createArchive): every regular file under the
    // project folder but hidden ones, named relative to it, with its POSIX mode.
    private File archive(Path dir)
        throws IOException
    {
        Path output = Files.createTempFile(work, "project", ".tar.gz");
        List<Path> files;
        try (Stream<Path> walk = Files.walk(dir)) {
            files = walk.filter(Files::isRegularFile)
                .filter(p -> !hidden(dir.relativize(p)))
                .sorted()
                .collect(Collectors.toList());
        }
        try (TarArchiveOutputStream tar = new TarArchiveOutputStream(
                    new GzipCompressorOutputStream(Files.newOutputStream(output)))) {
            tar.setLongFileMode(TarArchiveOutputStream.LONGFILE_POSIX);
            for (Path p : files) {
                TarArchiveEntry e = new TarArchiveEntry(p.toFile(), dir.relativize(p).toString());
                int mode = 0;
                for (PosixFilePermission perm : Files.getPosixFilePermissions(p)) {
                    mode |= 1 << (8 - perm.ordinal());
                }
                e.setMode(mode);
                tar.putArchiveEntry(e);
                Files.copy(p, tar);
                tar.closeArchiveEntry();
            }
        }
        return output.toFile();
    }

    private static boolean hidden(Path relative)
    {
        for (Path part : relative) {
            if (part.toString().startsWith(".")) {
                return true;
            }
        }
        return false;
    }

    private static String gunzip(InputStream in)
        throws IOException
    {
        try (InputStream gz = new GZIPInputStream(in)) {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            byte[] buf = new byte[8192];
            for (int n; (n = gz.read(buf)) > 0; ) {
                out.write(buf, 0, n);
            }
            return new String(out.toByteArray(), StandardCharsets.UTF_8);
        }
    }

    private static <T> T step(String name, Callable<T> body)
    {
        ObjectNode line = JSON.createObjectNode();
        line.put("step", name);
        T value = null;
        try {
            value = body.call();
            line.put("ok", true);
            line.set("value", JSON.valueToTree(value));
        }
        catch (WebApplicationException ex) {
            line.put("ok", false);
            line.put("status", ex.getResponse().getStatus());
            line.put("error", String.valueOf(ex));
            try {
                line.put("body", ex.getResponse().readEntity(String.class));
            }
            catch (RuntimeException unread) {
                line.put("body", "(unreadable: " + unread + ")");
            }
        }
        catch (Exception ex) {
            Throwable root = ex;
            while (root.getCause() != null && root.getCause() != root) {
                root = root.getCause();
            }
            line.put("ok", false);
            line.put("error", ex.toString());
            line.put("cause", root.toString());
        }
        System.out.println(line.toString());
        System.out.flush();
        return value;
    }
}
