import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.google.common.base.Optional;
import com.google.common.collect.ImmutableMultimap;
import com.treasuredata.client.TDClient;
import com.treasuredata.client.TDClientException;
import com.treasuredata.client.TDClientHttpConflictException;
import com.treasuredata.client.TDClientHttpException;
import com.treasuredata.client.TDClientHttpNotFoundException;
import com.treasuredata.client.model.TDBulkLoadSessionStartRequest;
import com.treasuredata.client.model.TDColumn;
import com.treasuredata.client.model.TDDatabase;
import com.treasuredata.client.model.TDJob;
import com.treasuredata.client.model.TDJobRequest;
import com.treasuredata.client.model.TDJobRequestBuilder;
import com.treasuredata.client.model.TDJobSummary;
import com.treasuredata.client.model.TDResultFormat;
import com.treasuredata.client.model.TDTable;
import org.msgpack.core.MessagePack;
import org.msgpack.core.MessageUnpacker;
import org.msgpack.value.ArrayValue;
import org.msgpack.value.Value;

import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.zip.GZIPInputStream;

/**
 * Replays, with td-client-java 0.9.0, the client calls Digdag 0.10.5.1's td operators make
 * (digdag-standards io.digdag.standards.operator.td: TDOperator, TDJobOperator,
 * BaseTdJobOperator, TdOperatorFactory, TdDdlOperatorFactory, TdLoadOperatorFactory), for the
 * tasks of a JSON spec, and prints what the client read as JSON lines.
 *
 * Usage: TdOperatorsDriver HOST:PORT SPEC.json (API key in env TD_API_KEY). The client is
 * built as TDClientFactory builds it: endpoint HOST:PORT (Digdag has no port setting),
 * use_ssl false, the key, td-client's own retries off. Each task's requests carry the header
 * X-Referee-Task: NAME, so the server side can tell which task asked for what.
 *
 * Digdag's polling of a job across task executions is a loop here (every 50 ms); its retry of
 * non-deterministic errors (5xx, 429, 408, transport) is kept: 3 retries, 500 ms to 2 s apart.
 */
public class TdOperatorsDriver
{
    static final ObjectMapper JSON = new ObjectMapper();
    static final long POLL_MILLIS = 50;
    static final long JOB_TIMEOUT_MILLIS = 120_000;

    final TDClient base;
    final Map<String, String> domainKeys = new HashMap<>();
    final Map<String, String> jobIds = new HashMap<>();
    Op inspect;  // the task's own client, for what the driver reads beyond Digdag's calls

    TdOperatorsDriver(TDClient base)
    {
        this.base = base;
    }

    public static void main(String[] args) throws Exception
    {
        String endpoint = args[0];
        JsonNode spec = JSON.readTree(new File(args[1]));
        String apikey = System.getenv("TD_API_KEY");
        TDClient client = build(endpoint, apikey);
        TdOperatorsDriver driver = new TdOperatorsDriver(client);
        for (JsonNode task : spec.get("tasks")) {
            driver.run((ObjectNode) task, endpoint, apikey);
        }
        client.close();
    }

    static TDClient build(String endpoint, String apikey)
    {
        return TDClient.newBuilder(false)
                .setEndpoint(endpoint)
                .setUseSSL(false)
                .setApiKey(apikey)
                .setRetryLimit(0)
                .build();
    }

    void run(ObjectNode task, String endpoint, String apikey)
    {
        String name = task.get("name").asText();
        String op = task.get("op").asText();
        ObjectNode out = JSON.createObjectNode();
        out.put("task", name);
        out.put("op", op);
        TDClient owned = null;
        try {
            TDClient client = base;
            if (task.has("apikey")) {  // the td.apikey secret of this task
                owned = build(endpoint, task.get("apikey").asText());
                client = owned;
            }
            String database = text(task, "database", null);
            inspect = new Op(client.withHeaders(ImmutableMultimap.of("X-Referee-Task", name + ":inspect")), database);
            client = client.withHeaders(ImmutableMultimap.of("X-Referee-Task", name));
            Op tdOp = new Op(client, database);
            switch (op) {
                case "td": td(tdOp, task, out); break;
                case "td_ddl": tdDdl(tdOp, task, out); break;
                case "td_load": tdLoad(tdOp, task, out); break;
                case "td_wait": tdWait(tdOp, task, out); break;
                case "swap": swap(tdOp, task); break;
                case "kill": kill(tdOp, task, out); break;
                case "tables": tables(tdOp, task, out); break;
                case "databases": databases(tdOp, out); break;
                default: throw new IllegalArgumentException("unknown op " + op);
            }
            out.put("ok", true);
        }
        catch (Exception e) {
            out.put("ok", false);
            out.set("error", error(e));
        }
        finally {
            if (owned != null) {
                owned.close();
            }
        }
        System.out.println(out.toString());
        System.out.flush();
    }

    // -- td>: TdOperatorFactory.TdOperator ----------------------------------------------------

    void td(Op op, ObjectNode task, ObjectNode out) throws Exception
    {
        String engine = text(task, "engine", "presto");
        String query = task.get("query").asText();
        Optional<String[]> insertInto = table(task, "insert_into");
        Optional<String[]> createTable = table(task, "create_table");
        String stmt;
        switch (engine) {
            case "presto":
                if (insertInto.isPresent()) {
                    ensureTableCreated(op, insertInto.get());
                    stmt = insertCommandStatement("INSERT INTO " + presto(insertInto.get()), query);
                }
                else if (createTable.isPresent()) {
                    String t = presto(createTable.get());
                    stmt = insertCommandStatement("DROP TABLE IF EXISTS " + t + ";\nCREATE TABLE " + t + " AS", query);
                }
                else {
                    stmt = query;
                }
                break;
            case "hive":
                if (insertInto.isPresent()) {
                    ensureTableCreated(op, insertInto.get());
                    stmt = insertCommandStatement("INSERT INTO TABLE " + hive(insertInto.get()), query);
                }
                else if (createTable.isPresent()) {
                    ensureTableCreated(op, createTable.get());
                    stmt = insertCommandStatement("INSERT OVERWRITE TABLE " + hive(createTable.get()), query);
                }
                else {
                    stmt = query;
                }
                break;
            default:
                throw new IllegalArgumentException("Unknown 'engine:' option (available options are: hive and presto): " + engine);
        }
        String sql = wrapStmtWithComment(task, stmt);
        out.put("statement", sql);
        String domainKey = domainKey(task);
        TDJobRequest req = new TDJobRequestBuilder()
                .setResultOutput(null)
                .setType(engine)
                .setDatabase(op.database)
                .setQuery(sql)
                .setRetryLimit(task.path("job_retry").asInt(0))
                .setPriority(task.path("priority").asInt(0))
                .setPoolName(text(task, engine + "_pool_name", null))
                .setScheduledTime(task.path("session_time").asLong(0))
                .setResultConnectionId(Optional.<Long>absent())
                .setResultConnectionSettings(Optional.<String>absent())
                .setDomainKey(domainKey)
                .setEngineVersion(engineVersion(task, engine))
                .createTDJobRequest();
        String jobId = op.submitNewJobWithRetry(req);
        if (!task.path("wait").asBoolean(true)) {  // left running, for a later `kill`
            jobIds.put(task.get("name").asText(), jobId);
            out.put("job_id", jobId);
            return;
        }
        finishJob(op, task, jobId, out);
        boolean storeLastResults = task.path("store_last_results").asBoolean(false);
        if (storeLastResults) {
            out.set("last_results", lastResults(op, jobId));
        }
        // BaseTdJobOperator.runTask: td.last_job.num_records
        TDJob info = op.jobInfo(jobId);
        out.put("num_records", info.getNumRecords());
        out.set("job", job(info));
    }

    /** TDOperator.runJob from the submit on: poll status; a job that did not succeed fails
     *  the task with its cmdout and stderr (jobInfo). `out.job` is TDJob as read then, or
     *  (for a success, where Digdag does not ask) as the inspecting client reads it. */
    void finishJob(Op op, ObjectNode task, String jobId, ObjectNode out) throws Exception
    {
        jobIds.put(task.get("name").asText(), jobId);
        out.put("job_id", jobId);
        ArrayNode seen = out.putArray("statuses");
        long deadline = System.currentTimeMillis() + JOB_TIMEOUT_MILLIS;
        TDJobSummary status;
        while (true) {
            status = op.jobStatus(jobId);
            String s = status.getStatus().name().toLowerCase();
            if (seen.size() == 0 || !seen.get(seen.size() - 1).asText().equals(s)) {
                seen.add(s);
            }
            if (status.getStatus().isFinished()) {
                break;
            }
            if (System.currentTimeMillis() > deadline) {
                throw new IllegalStateException("job " + jobId + " did not finish");
            }
            Thread.sleep(POLL_MILLIS);
        }
        out.set("summary", summary(status));
        if (status.getStatus() != TDJob.Status.SUCCESS) {
            TDJob info = op.jobInfo(jobId);
            out.set("job", job(info));
            throw new TaskFailed(info.getCmdOut() + "\n" + info.getStdErr());
        }
        out.set("job", job(inspect.jobInfo(jobId)));
    }

    /** TdOperatorFactory.buildStoreParams: the first row by the result schema's names. */
    JsonNode lastResults(Op op, String jobId) throws IOException
    {
        List<ArrayValue> rows;
        try {
            rows = op.firstRows(jobId, 1);
        }
        catch (TDClientHttpNotFoundException e) {
            rows = new ArrayList<>();  // INSERT or CREATE: TD has no result
        }
        Map<String, Value> map = new LinkedHashMap<>();
        StringBuilder json = new StringBuilder("{");
        if (!rows.isEmpty()) {
            ArrayValue row = rows.get(0);
            List<String> names = op.resultColumnNames(jobId);
            for (int i = 0; i < Math.min(row.size(), names.size()); i++) {
                map.put(names.get(i), row.get(i));
            }
        }
        boolean first = true;
        for (Map.Entry<String, Value> e : map.entrySet()) {
            if (!first) {
                json.append(',');
            }
            first = false;
            json.append(JSON.writeValueAsString(e.getKey())).append(':').append(e.getValue().toJson());
        }
        json.append('}');
        return JSON.readTree(json.toString());
    }

    // -- td_ddl>: TdDdlOperatorFactory ---------------------------------------------------------

    void tdDdl(Op op, ObjectNode task, ObjectNode out) throws Exception
    {
        List<String> dropDatabases = strings(task, "drop_databases");
        List<String> createDatabases = strings(task, "create_databases");
        List<String> emptyDatabases = strings(task, "empty_databases");
        List<String> dropTables = strings(task, "drop_tables");
        List<String> createTables = strings(task, "create_tables");
        List<String> emptyTables = strings(task, "empty_tables");
        List<String[]> renames = new ArrayList<>();
        for (JsonNode r : task.path("rename_tables")) {
            String to = r.get("to").asText();
            if (to.contains(".")) {
                throw new TaskFailed("'to' option of rename_tables can't include database name");
            }
            renames.add(new String[] {r.get("from").asText(), to});
        }
        // every `from` must exist, so that a 404 on the rename itself can be ignored
        for (String[] r : renames) {
            String[] from = TableParam(r[0]);
            String db = from[0] != null ? from[0] : op.database;
            if (!op.withDatabase(db).tableExists(from[1])) {
                throw new TaskFailed(String.format("Renaming table %s.%s doesn't exist", db, from[1]));
            }
        }
        for (String d : concat(dropDatabases, emptyDatabases)) {
            op.withDatabase(d).ensureDatabaseDeleted(d);
        }
        for (String d : concat(createDatabases, emptyDatabases)) {
            op.withDatabase(d).ensureDatabaseCreated(d);
        }
        for (String t : concat(dropTables, emptyTables)) {
            String[] p = TableParam(t);
            op.withDatabase(p[0] != null ? p[0] : op.database).ensureTableDeleted(p[1]);
        }
        for (String t : concat(createTables, emptyTables)) {
            String[] p = TableParam(t);
            op.withDatabase(p[0] != null ? p[0] : op.database).ensureTableCreated(p[1]);
        }
        for (String[] r : renames) {
            String[] from = TableParam(r[0]);
            op.withDatabase(from[0] != null ? from[0] : op.database).ensureExistentTableRenamed(from[1], r[1]);
        }
    }

    // -- td_load>: TdLoadOperatorFactory -------------------------------------------------------

    void tdLoad(Op op, ObjectNode task, ObjectNode out) throws Exception
    {
        String domainKey = domainKey(task);
        String jobId;
        if (task.has("session")) {  // td_load>: NAME, a saved data connector session
            String name = task.get("session").asText();
            TDBulkLoadSessionStartRequest req = TDBulkLoadSessionStartRequest.builder()
                    .setScheduledTime(task.path("session_time").asLong(0))
                    .setDomainKey(domainKey)
                    .build();
            jobId = op.submitNewJobWithRetry(c -> c.startBulkLoadSession(name, req).getJobId());
        }
        else {  // td_load>: config.yml, its YAML as a job config
            String[] table = TableParam(task.get("table").asText());
            TDJobRequest req = new TDJobRequestBuilder()
                    .setType(TDJob.Type.BULKLOAD)
                    .setDatabase(table[0] != null ? table[0] : op.database)
                    .setTable(table[1])
                    .setConfig((ObjectNode) task.get("config"))
                    .setQuery("")
                    .setDomainKey(domainKey)
                    .createTDJobRequest();
            jobId = op.submitNewJobWithRetry(req);
        }
        finishJob(op, task, jobId, out);
    }

    // -- td_wait>: TdWaitOperatorFactory (the query as written, no comment header) ----------

    void tdWait(Op op, ObjectNode task, ObjectNode out) throws Exception
    {
        String engine = text(task, "engine", "presto");
        TDJobRequest req = new TDJobRequestBuilder()
                .setType(engine)
                .setDatabase(op.database)
                .setQuery(task.get("query").asText())
                .setRetryLimit(task.path("job_retry").asInt(0))
                .setPriority(task.path("priority").asInt(0))
                .setScheduledTime(task.path("session_time").asLong(0))
                .setPoolName(text(task, engine + "_pool_name", null))
                .setDomainKey(domainKey(task))
                .setEngineVersion(engineVersion(task, engine))
                .createTDJobRequest();
        String jobId = op.submitNewJobWithRetry(req);
        finishJob(op, task, jobId, out);
        // the condition holds when the first row's first value is not NULL, false or 0
        List<ArrayValue> rows = op.firstRows(jobId, 1);
        boolean done = false;
        if (!rows.isEmpty()) {
            if (rows.get(0).size() < 1) {
                throw new TaskFailed("Got empty row in result of query");
            }
            Value first = rows.get(0).get(0);
            switch (first.getValueType()) {
                case NIL: done = false; break;
                case BOOLEAN: done = first.asBooleanValue().getBoolean(); break;
                case INTEGER: done = first.asIntegerValue().asLong() != 0; break;
                default: done = true;
            }
        }
        out.put("done", done);
    }

    // -- swapTables: td-client's call, which no td operator of 0.10.5.1 makes -------------------

    void swap(Op op, ObjectNode task)
    {
        op.callWithRetry(() -> { op.client.swapTables(op.database, task.get("table1").asText(), task.get("table2").asText()); return null; });
    }

    // -- an attempt killed while its td> job runs: BaseTdJobOperator.cleanup -------------------

    void kill(Op op, ObjectNode task, ObjectNode out) throws Exception
    {
        String jobId = jobIds.get(task.get("job_of").asText());
        op.callWithRetry(() -> { op.client.killJob(jobId); return null; });
        out.put("job_id", jobId);
        try {
            finishJob(inspect, task, jobId, out);  // the attempt is over: only the driver looks
        }
        catch (TaskFailed e) {
            out.put("message", e.getMessage());
        }
    }

    // -- what a user sees of the tables and databases, as the client reads them ---------------

    void tables(Op op, ObjectNode task, ObjectNode out)
    {
        ArrayNode list = out.putArray("tables");
        for (TDTable t : op.callWithRetry(() -> op.client.listTables(op.database))) {
            ObjectNode one = list.addObject();
            one.put("name", t.getName());
            one.put("type", t.getType().getTypeName());
            one.put("count", t.getRowCount());
            ArrayNode columns = one.putArray("columns");
            for (TDColumn c : t.getColumns()) {
                columns.addArray().add(c.getName()).add(c.getType().toString());
            }
        }
        if (task.has("show")) {
            TDTable t = op.callWithRetry(() -> op.client.showTable(op.database, task.get("show").asText()));
            ObjectNode one = out.putObject("show");
            one.put("name", t.getName());
            one.put("count", t.getRowCount());
            one.put("columns", t.getColumns().size());
        }
    }

    void databases(Op op, ObjectNode out)
    {
        ArrayNode list = out.putArray("databases");
        for (TDDatabase d : op.callWithRetry(() -> op.client.listDatabases())) {
            list.addObject().put("name", d.getName()).put("count", d.getCount()).put("permission", d.getPermission());
        }
    }

    // -- TDOperator / TDJobOperator, as Digdag calls the client --------------------------------

    static class Op
    {
        final TDClient client;
        final String database;

        Op(TDClient client, String database)
        {
            this.client = client;
            this.database = database;
        }

        Op withDatabase(String db)
        {
            return new Op(client, db);
        }

        interface Call<T>
        {
            T call() throws Exception;
        }

        /** BaseTDOperator.callWithRetry: deterministic errors (4xx but 408/429, bad input)
         *  fail at once; others are retried 3 times, 500 ms doubling to 2 s. */
        <T> T callWithRetry(Call<T> op)
        {
            long wait = 500;
            for (int attempt = 0; ; attempt++) {
                try {
                    return op.call();
                }
                catch (RuntimeException e) {
                    if (attempt >= 3 || deterministic(e)) {
                        throw e;
                    }
                }
                catch (Exception e) {
                    throw new RuntimeException(e);
                }
                try {
                    Thread.sleep(wait);
                }
                catch (InterruptedException ie) {
                    throw new RuntimeException(ie);
                }
                wait = Math.min(wait * 2, 2000);
            }
        }

        /** TDOperator.runWithRetry: the error of class `ignore` is success. */
        void runWithRetry(Runnable op, Class<?> ignore)
        {
            try {
                callWithRetry(() -> { op.run(); return null; });
            }
            catch (RuntimeException e) {
                if (!ignore.isInstance(e)) {
                    throw e;
                }
            }
        }

        void ensureDatabaseCreated(String name)
        {
            runWithRetry(() -> client.createDatabase(name), TDClientHttpConflictException.class);
            if (!client.existsDatabase(name)) {
                runWithRetry(() -> client.createDatabase(name), TDClientHttpConflictException.class);
            }
        }

        void ensureDatabaseDeleted(String name)
        {
            runWithRetry(() -> client.deleteDatabase(name), TDClientHttpNotFoundException.class);
        }

        void ensureTableCreated(String table)
        {
            runWithRetry(() -> client.createTable(database, table), TDClientHttpConflictException.class);
            if (!client.existsTable(database, table)) {
                runWithRetry(() -> client.createTable(database, table), TDClientHttpConflictException.class);
            }
        }

        void ensureTableDeleted(String table)
        {
            runWithRetry(() -> client.deleteTable(database, table), TDClientHttpNotFoundException.class);
        }

        void ensureExistentTableRenamed(String table, String to)
        {
            runWithRetry(() -> client.renameTable(database, table, to, true), TDClientHttpNotFoundException.class);
        }

        boolean tableExists(String table)
        {
            return callWithRetry(() -> client.existsTable(database, table));
        }

        interface Submitter
        {
            String submit(TDClient client);
        }

        /** TDOperator.submitNewJob: a 409 naming the job of the same domain key is that job. */
        String submitNewJobWithRetry(Submitter submitter)
        {
            return callWithRetry(() -> {
                try {
                    return submitter.submit(client);
                }
                catch (TDClientHttpConflictException e) {
                    if (e.getConflictsWith().isPresent()) {
                        return e.getConflictsWith().get();
                    }
                    throw e;
                }
            });
        }

        String submitNewJobWithRetry(TDJobRequest req)
        {
            return submitNewJobWithRetry(c -> c.submit(req));
        }

        TDJobSummary jobStatus(String jobId)
        {
            return callWithRetry(() -> client.jobStatus(jobId));
        }

        TDJob jobInfo(String jobId)
        {
            return callWithRetry(() -> client.jobInfo(jobId));
        }

        /** TDJobOperator.getResultColumnNames: hive_result_schema's first elements. */
        List<String> resultColumnNames(String jobId) throws IOException
        {
            Optional<String> schema = jobInfo(jobId).getResultSchema();
            List<String> names = new ArrayList<>();
            if (schema.isPresent()) {
                for (JsonNode pair : (ArrayNode) JSON.readTree(schema.get())) {
                    names.add(pair.get(0).textValue());
                }
            }
            return names;
        }

        /** TDJobOperator.getResult: msgpack.gz, one array per row. */
        List<ArrayValue> firstRows(String jobId, int max)
        {
            return callWithRetry(() -> client.jobResult(jobId, TDResultFormat.MESSAGE_PACK_GZ, in -> {
                try (MessageUnpacker unpacker = MessagePack.newDefaultUnpacker(new GZIPInputStream(in, 32 * 1024))) {
                    List<ArrayValue> rows = new ArrayList<>();
                    while (rows.size() < max && unpacker.hasNext()) {
                        rows.add(unpacker.unpackValue().asArrayValue());
                    }
                    return rows;
                }
                catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            }));
        }

        static boolean deterministic(Exception e)
        {
            if (e instanceof TDClientHttpException) {
                int code = ((TDClientHttpException) e).getStatusCode();
                if (code == 429 || code == 408) {
                    return false;
                }
                return code >= 400 && code < 500;
            }
            if (e instanceof TDClientException) {
                TDClientException.ErrorType t = ((TDClientException) e).getErrorType();
                return t == TDClientException.ErrorType.INVALID_CONFIGURATION || t == TDClientException.ErrorType.INVALID_INPUT;
            }
            return false;
        }
    }

    /** The task fails with this message (Digdag's TaskExecutionException or ConfigException). */
    static class TaskFailed extends Exception
    {
        TaskFailed(String message)
        {
            super(message);
        }
    }

    // -- the SQL Digdag sends ------------------------------------------------------------------

    // TdOperatorFactory.insertCommandStatement: the command goes at a `-- DIGDAG_INSERT_LINE`
    // line, else after the leading comment lines, else first.
    static final Pattern INSERT_LINE = Pattern.compile("(\\A|\\r?\\n)\\-\\-\\s*DIGDAG_INSERT_LINE(?:(?!\\n|\\z).)*", Pattern.MULTILINE);
    static final Pattern HEADER_COMMENTS = Pattern.compile("\\A([\\r\\n\\t]*(?:(?:\\A|\\n)\\-\\-[^\\n]*)+)\\n?(.*)\\z", Pattern.MULTILINE);

    static String insertCommandStatement(String command, String original)
    {
        Matcher line = INSERT_LINE.matcher(original);
        if (line.find()) {
            return line.replaceFirst(line.group(1) + command);
        }
        Matcher header = HEADER_COMMENTS.matcher(original);
        if (header.find()) {
            return header.group(1) + "\n" + command + "\n" + header.group(2);
        }
        return command + "\n" + original;
    }

    /** TdOperatorFactory.wrapStmtWithComment: the task's identity as leading comments. */
    static String wrapStmtWithComment(ObjectNode task, String stmt)
    {
        return "-- project_id: " + task.path("project_id").asText("1") + "\n"
                + "-- project_name: " + task.path("project_name").asText("referee") + "\n"
                + "-- workflow_name: " + task.path("workflow_name").asText("wf") + "\n"
                + "-- session_id: " + task.path("session_id").asText("1") + "\n"
                + "-- attempt_id: " + task.path("attempt_id").asText("1") + "\n"
                + "-- task_name: +wf+" + task.get("name").asText() + "\n"
                + stmt;
    }

    /** engine_version (hive_engine_version wins for hive), as TDJob.EngineVersion or null. */
    static TDJob.EngineVersion engineVersion(ObjectNode task, String engine)
    {
        String ev = text(task, "engine_version", null);
        if (engine.equals("hive") && task.hasNonNull("hive_engine_version")) {
            ev = task.get("hive_engine_version").asText();
        }
        return ev == null ? null : TDJob.EngineVersion.fromString(ev);
    }

    static String presto(String[] t)
    {
        return (t[0] != null ? "\"" + t[0] + "\"." : "") + "\"" + t[1] + "\"";
    }

    static String hive(String[] t)
    {
        return (t[0] != null ? "`" + t[0] + "`." : "") + "`" + t[1] + "`";
    }

    void ensureTableCreated(Op op, String[] t)
    {
        op.withDatabase(t[0] != null ? t[0] : op.database).ensureTableCreated(t[1]);
    }

    // -- helpers ------------------------------------------------------------------------------

    /** TableParam.parse: `db.table` splits at the first dot. */
    static String[] TableParam(String expr)
    {
        int dot = expr.indexOf('.');
        return dot >= 0 ? new String[] {expr.substring(0, dot), expr.substring(dot + 1)} : new String[] {null, expr};
    }

    static Optional<String[]> table(ObjectNode task, String key)
    {
        return task.has(key) ? Optional.of(TableParam(task.get(key).asText())) : Optional.<String[]>absent();
    }

    /** The task's domain key: a new UUID (runJob), or another task's to replay a retry. */
    String domainKey(ObjectNode task)
    {
        String key = task.has("domain_key_of") ? domainKeys.get(task.get("domain_key_of").asText()) : UUID.randomUUID().toString();
        domainKeys.put(task.get("name").asText(), key);
        return key;
    }

    static String text(ObjectNode task, String key, String fallback)
    {
        return task.hasNonNull(key) ? task.get(key).asText() : fallback;
    }

    static List<String> strings(ObjectNode task, String key)
    {
        List<String> out = new ArrayList<>();
        for (JsonNode n : task.path(key)) {
            out.add(n.asText());
        }
        return out;
    }

    static List<String> concat(List<String> a, List<String> b)
    {
        List<String> out = new ArrayList<>(a);
        out.addAll(b);
        return out;
    }

    static ObjectNode summary(TDJobSummary s)
    {
        ObjectNode o = JSON.createObjectNode();
        o.put("job_id", s.getJobId());
        o.put("status", s.getStatus().name().toLowerCase());
        o.put("result_size", s.getResultSize());
        o.put("duration", s.getDuration());
        o.put("created_at", s.getCreatedAt());
        o.put("updated_at", s.getUpdatedAt());
        o.put("end_at", s.getEndAt());
        return o;
    }

    static ObjectNode job(TDJob j)
    {
        ObjectNode o = JSON.createObjectNode();
        o.put("job_id", j.getJobId());
        o.put("status", j.getStatus().name().toLowerCase());
        o.put("type", j.getType().getType());
        o.put("database", j.getDatabase());
        o.put("query", j.getQuery());
        o.put("result_schema", j.getResultSchema().orNull());
        o.put("num_records", j.getNumRecords());
        o.put("result_size", j.getResultSize());
        o.put("created_at", j.getCreatedAt());
        o.put("start_at", j.getStartAt());
        o.put("end_at", j.getEndAt());
        o.put("cmdout", j.getCmdOut());
        o.put("stderr", j.getStdErr());
        return o;
    }

    static ObjectNode error(Exception e)
    {
        ObjectNode o = JSON.createObjectNode();
        o.put("class", e.getClass().getSimpleName());
        o.put("message", e.getMessage());
        if (e instanceof TDClientHttpException) {
            o.put("status", ((TDClientHttpException) e).getStatusCode());
        }
        if (e instanceof TDClientHttpConflictException) {
            o.put("conflicts_with", ((TDClientHttpConflictException) e).getConflictsWith().orNull());
        }
        return o;
    }
}
