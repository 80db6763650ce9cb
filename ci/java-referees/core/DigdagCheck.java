// `digdag check` with Digdag's own classes (io.digdag:digdag-core), without its Guice wiring:
// for every workflow file of each project folder given, the steps Check and Push take
// (ProjectArchiveLoader loads it with YamlConfigLoader, WorkflowFile.fromConfig checks its top
// level, WorkflowCompiler.compile builds its tasks), and one JSON object a line:
//   {"project": DIR, "file": "wf.dig", "ok": true, "timezone": "UTC", "config": {...},
//    "tasks": [{"name": "+wf+a", "group": false, "parent": "+wf", "upstreams": [...]}]}
//   {"project": DIR, "file": "bad.dig", "ok": false, "error": "...", "error_class": "..."}
//
//   java -cp 'lib/*:classes' DigdagCheck PROJECT_DIR...
//
// Schedules are not checked: their parsers live in digdag-standards, which is not served.
// The workflow files are those `digdag push` loads: *.dig at the top of the project folder.
// The tests that run this are tests/test_digdag_java_check.py.

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.digdag.client.DigdagClient;
import io.digdag.client.config.Config;
import io.digdag.client.config.ConfigFactory;
import io.digdag.core.archive.ProjectArchiveLoader;
import io.digdag.core.archive.WorkflowFile;
import io.digdag.core.config.ConfigLoaderManager;
import io.digdag.core.config.YamlConfigLoader;
import io.digdag.core.repository.WorkflowDefinition;
import io.digdag.core.workflow.Workflow;
import io.digdag.core.workflow.WorkflowCompiler;
import io.digdag.core.workflow.WorkflowTask;
import io.digdag.core.workflow.WorkflowTaskList;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.Stream;

public class DigdagCheck
{
    private static final ObjectMapper JSON = DigdagClient.objectMapper();

    public static void main(String[] args)
        throws IOException
    {
        ConfigFactory cf = new ConfigFactory(JSON);
        ProjectArchiveLoader loader = new ProjectArchiveLoader(new ConfigLoaderManager(cf, new YamlConfigLoader()));
        WorkflowCompiler compiler = new WorkflowCompiler();
        for (String arg : args) {
            Path project = Paths.get(arg).normalize().toAbsolutePath();
            if (!Files.isDirectory(project)) {
                System.err.println("not a folder: " + project);
                System.exit(2);
            }
            List<Path> digs;
            try (Stream<Path> list = Files.list(project)) {
                digs = list
                    .filter(p -> p.getFileName().toString().endsWith(".dig"))
                    .filter(p -> !p.getFileName().toString().startsWith("."))
                    .filter(Files::isRegularFile)
                    .sorted()
                    .collect(Collectors.toList());
            }
            for (Path dig : digs) {
                System.out.println(check(loader, compiler, cf, project, dig).toString());
            }
        }
    }

    private static ObjectNode check(ProjectArchiveLoader loader, WorkflowCompiler compiler,
            ConfigFactory cf, Path project, Path dig)
    {
        ObjectNode out = JSON.createObjectNode();
        out.put("project", project.toString());
        out.put("file", dig.getFileName().toString());
        try {
            WorkflowFile file = loader.loadWorkflowFileFromPath(project, dig, cf.create());
            WorkflowDefinition def = file.toWorkflowDefinition();
            Workflow wf = compiler.compile(def.getName(), def.getConfig());
            out.put("ok", true);
            out.put("timezone", def.getTimeZone().toString());
            out.set("config", JSON.valueToTree(def.getConfig()));
            out.set("tasks", tasks(wf.getTasks()));
        }
        catch (Exception ex) {
            out.put("ok", false);
            out.put("error", String.valueOf(ex.getMessage()));
            out.put("error_class", ex.getClass().getName());
            Throwable cause = ex.getCause();
            if (cause != null && cause != ex) {
                out.put("cause", String.valueOf(cause));
            }
        }
        return out;
    }

    private static ArrayNode tasks(WorkflowTaskList list)
    {
        ArrayNode out = JSON.createArrayNode();
        for (WorkflowTask t : list) {
            ObjectNode one = out.addObject();
            one.put("name", t.getFullName());
            one.put("group", t.getTaskType().isGroupingOnly());
            if (t.getParentIndex().isPresent()) {
                one.put("parent", list.get(t.getParentIndex().get()).getFullName());
            }
            ArrayNode ups = one.putArray("upstreams");
            for (int i : t.getUpstreamIndexes()) {
                ups.add(list.get(i).getFullName());
            }
            one.set("config", JSON.valueToTree(t.getConfig()));
        }
        return out;
    }
}
