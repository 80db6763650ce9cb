// Presto 350's SQL parser (io.prestosql:presto-parser), the Presto TD's presto engine runs,
// on SQL files, printing a verdict a line (common/ParseVerdicts.java):
//
//   java -cp 'lib/*:classes' PrestoParse FILE...
//
// Each file is parsed as the single statement td> sends (createStatement, decimal literals as
// DECIMAL, the server's default). Digdag's ${...} are replaced before, by the test.
// The tests that run this are tests/test_sql_java_parsers.py.

import io.prestosql.sql.parser.ParsingException;
import io.prestosql.sql.parser.ParsingOptions;
import io.prestosql.sql.parser.SqlParser;

import java.io.IOException;

public class PrestoParse
{
    public static void main(String[] args)
        throws IOException
    {
        SqlParser parser = new SqlParser();
        ParsingOptions options = new ParsingOptions(ParsingOptions.DecimalLiteralTreatment.AS_DECIMAL);
        ParseVerdicts.run(
            args,
            sql -> parser.createStatement(sql, options).getClass().getSimpleName(),
            ParsingException.class);
    }
}
